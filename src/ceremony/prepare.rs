//! Steps `kms_preflight`, `import_parameters`, `generate` and `wrap`, per target. A worker
//! thread checks (or creates) the target's key, then asks for its import parameters at once,
//! so that GetParametersForImport, paced at KMS's one-per-second default, starts with the first
//! checked key rather than after the last one; the calls of different targets overlap. Then, on
//! this thread and the one HSM session, AES-256 is generated as a session object, its KCV
//! computed, and it is wrapped under KMS's public key with the plan the known-answer test
//! proved.

use std::sync::mpsc::Sender;

use crate::error::Error;
use crate::hsm::AesKeyKind;
use crate::kms::{ImportParameters, Kms, KmsError, Operation};
use crate::transcript::payload::{ImportParameters as ParametersRecord, KeyGenerated, KeyWrapped};
use crate::wrap::{self, SelfTest, WrapLocation, WrappingPublicKey};

use super::target::Status;
use super::{Run, Step, pool, preflight, refused, sha256_hex};

enum Event {
    Preflight(preflight::Event),
    Parameters {
        index: usize,
        params: ImportParameters,
    },
    Failed {
        index: usize,
        error: KmsError,
    },
}

pub(super) fn targets(run: &mut Run<'_>, test: &SelfTest) -> Result<(), Error> {
    run.enter(Step::ImportParameters)?;
    let c = run.ceremony;
    if c.import.kind == crate::spec::Kind::Reimport {
        run.prompter.say(
            "  kind = \"reimport\": nothing is generated; each target's checked copy of its kept key is wrapped",
        );
    }
    let jobs = preflight::jobs(run);
    let least = c
        .kms
        .rates
        .least_time(&[(Operation::GetParametersForImport, jobs.len())]);
    if jobs.len() > 1 {
        run.prompter.say(&format!(
            "  {} targets; at KMS's pace (GetParametersForImport {}/s) this takes at least {} s",
            jobs.len(),
            c.kms.rates.of(Operation::GetParametersForImport),
            least.as_secs()
        ));
    }
    let (algorithm, spec) = (c.import.algorithm, c.import.key_spec);
    let id = c.id.clone();
    let kms = run.kms;
    let work = |job: preflight::Job, tx: &Sender<Event>| {
        let index = job.index;
        // Checked before the plan approval: straight to the import parameters.
        if let Some(arn) = job.checked.clone() {
            let event = match kms.get_parameters_for_import(&arn, algorithm, spec) {
                Ok(params) => Event::Parameters { index, params },
                Err(error) => Event::Failed { index, error },
            };
            let ok = matches!(event, Event::Parameters { .. });
            let _ = tx.send(event);
            return ok;
        }
        let checked = preflight::check_one(kms, &id, job);
        let info = match &checked {
            preflight::Event::Created { info, .. } | preflight::Event::Described { info, .. } => {
                Some(info.clone())
            }
            preflight::Event::ForRotation { info, .. } => Some(info.clone()),
            preflight::Event::Failed { .. } | preflight::Event::ToCreate { .. } => None,
        };
        let _ = tx.send(Event::Preflight(checked));
        // A key the preflight refuses gets no parameters (the main thread says why).
        let Some(info) = info.filter(|i| preflight::rules(i).is_ok()) else {
            return false;
        };
        let event = match kms.get_parameters_for_import(&info.arn, algorithm, spec) {
            Ok(params) => Event::Parameters { index, params },
            Err(error) => Event::Failed { index, error },
        };
        let ok = matches!(event, Event::Parameters { .. });
        let _ = tx.send(event);
        ok
    };
    let total = jobs.len();
    let mut done = 0;
    let progress = run.prompter.progress(
        &format!("waiting for KMS: GetParametersForImport for {total} target(s)"),
        (total > 1).then_some(total as u64),
    );
    let result = pool::run(run.concurrency, jobs, work, |event| match event {
        Event::Preflight(checked) => preflight::handle(run, checked),
        // Only a target whose preflight passed is generated and wrapped, and none after a
        // failure (its parameters are dropped: it stays not started).
        Event::Parameters { index, .. }
            if run.targets[index].status != Status::Checked || run.failed_step.is_some() =>
        {
            Ok(())
        }
        Event::Parameters { index, params } => {
            done += 1;
            progress.inc(1);
            let r = one(run, test, index, params);
            if r.is_err() {
                run.fail_at(index);
            } else {
                run.prompter.say(&format!(
                    "  [{index}] {} ({done}/{total}): wrapped, KCV {}",
                    run.targets[index].name(),
                    run.targets[index].kcv.as_deref().unwrap_or("?")
                ));
            }
            r
        }
        Event::Failed { index, error } => {
            run.step = Step::ImportParameters;
            run.fail_at(index);
            Err(error.into())
        }
    });
    progress.finish();
    result
}

/// Records the parameters, then generates and wraps one target's key on the HSM.
fn one(
    run: &mut Run<'_>,
    test: &SelfTest,
    index: usize,
    params: ImportParameters,
) -> Result<(), Error> {
    let public = parameters(run, index, &params)?;
    let c = run.ceremony;
    let location = c.import.wrap;
    let arn = run.targets[index].arn.clone().unwrap_or_default();

    // A reimport generates nothing: the session copy of the kept key, checked against the
    // source's KCV before the plan approval, is what gets wrapped.
    if c.import.kind == crate::spec::Kind::Reimport {
        let Some(key) = run.targets[index]
            .key
            .filter(|_| run.targets[index].reimport.is_some())
        else {
            return Err(refused(format!(
                "target {index} has no checked copy of its kept key; this is a bug in byok"
            )));
        };
        return wrap_key(run, test, index, key, &public, params);
    }

    run.step = Step::Generate;
    let kind = match location {
        WrapLocation::Host => AesKeyKind::Extractable,
        WrapLocation::Hsm => AesKeyKind::Sensitive,
    };
    let key = run.hsm.generate_aes256(kind.clone())?;
    run.created.push(key);
    run.targets[index].key = Some(key);
    let length = run.hsm.key_length(key)?;
    if length != 32 {
        return Err(refused(format!(
            "the HSM generated a {length}-byte key; KMS SYMMETRIC_DEFAULT needs exactly 32 bytes"
        )));
    }
    // What the token says about the new key, not what byok asked for: a token that ignored
    // CKA_SENSITIVE (or made a token object) is refused before anything is wrapped.
    let attributes = run.hsm.key_attributes(key)?;
    if kind == AesKeyKind::Sensitive && !attributes.sensitive {
        return Err(refused(
            "the HSM generated the ceremony key without CKA_SENSITIVE although byok asked for it, so its value could be read out of the token; use a token that honours CKA_SENSITIVE".into(),
        ));
    }
    if attributes.token {
        return Err(refused(
            "the HSM generated the ceremony key as a token object although byok asked for a session object; use a token that honours CKA_TOKEN".into(),
        ));
    }
    let kcv = hex::encode(run.hsm.key_check_value(key)?);
    run.record(&KeyGenerated {
        target_index: index as u64,
        key_arn: arn.clone(),
        handle: run.hsm.raw_handle(key),
        label: kind.label().into(),
        key_type: "AES".into(),
        value_length: length as u64,
        token_object: attributes.token,
        sensitive: attributes.sensitive,
        kcv: kcv.clone(),
        kcv_method: "AES-ECB of one zero block, first 3 bytes".into(),
    })?;
    run.targets[index].kcv = Some(kcv);
    wrap_key(run, test, index, key, &public, params)
}

/// New import parameters for targets whose earlier ones expired while the custodians
/// deliberated: GetParametersForImport again (on this thread, paced), and the same generated
/// key wrapped again under the new public key. Each gets `import_parameters` and `key_wrapped`
/// records; the import statement must then be approved again.
pub(super) fn refresh(run: &mut Run<'_>, test: &SelfTest, indices: &[usize]) -> Result<(), Error> {
    run.enter(Step::ImportParameters)?;
    let c = run.ceremony;
    for &index in indices {
        run.step = Step::ImportParameters;
        let (Some(arn), Some(key)) = (run.targets[index].arn.clone(), run.targets[index].key)
        else {
            return Err(refused(format!(
                "target {index} has no key to wrap again; this is a bug in byok"
            )));
        };
        let params = run
            .kms
            .get_parameters_for_import(&arn, c.import.algorithm, c.import.key_spec)
            .inspect_err(|_| run.fail_at(index))?;
        let public = parameters(run, index, &params)?;
        wrap_key(run, test, index, key, &public, params)?;
        run.prompter.say(&format!(
            "  [{index}] {arn}: new import parameters, wrapped again (same key, KCV {})",
            run.targets[index].kcv.as_deref().unwrap_or("?")
        ));
    }
    Ok(())
}

/// Records `import_parameters` and checks them against the target (LocalStack does not bind
/// the token to the key, nor check its age: byok does). Returns the wrapping public key.
fn parameters(
    run: &mut Run<'_>,
    index: usize,
    params: &ImportParameters,
) -> Result<WrappingPublicKey, Error> {
    let c = run.ceremony;
    let (algorithm, spec) = (c.import.algorithm, c.import.key_spec);
    let arn = run.targets[index].arn.clone().unwrap_or_default();
    run.step = Step::ImportParameters;
    let public_key_sha256 = sha256_hex(&params.public_key_der);
    run.record(&ParametersRecord {
        target_index: index as u64,
        key_arn: arn.clone(),
        wrapping_algorithm: algorithm.kms_name().into(),
        wrapping_key_spec: spec.kms_name().into(),
        public_key_sha256: public_key_sha256.clone(),
        public_key_der_length: params.public_key_der.len() as u64,
        import_token_sha256: params.import_token.sha256_hex(),
        parameters_valid_to: crate::rfc3339::format(params.parameters_valid_to),
    })?;
    // LocalStack does not bind the token to the key, nor check its age: byok does.
    if params.key_id != arn {
        return Err(refused(format!(
            "GetParametersForImport answered for key {}, not {arn}; the public key and import token must come from one response for the target key",
            params.key_id
        )));
    }
    if params.parameters_valid_to <= (run.now)() {
        return Err(super::import::expired(params.parameters_valid_to));
    }
    Ok(WrappingPublicKey::from_spki_der(
        &params.public_key_der,
        spec,
    )?)
}

/// Wraps `key` under `public` with the plan the known-answer test proved, and records it.
fn wrap_key(
    run: &mut Run<'_>,
    test: &SelfTest,
    index: usize,
    key: crate::hsm::KeyRef,
    public: &WrappingPublicKey,
    params: ImportParameters,
) -> Result<(), Error> {
    let c = run.ceremony;
    let (algorithm, location) = (c.import.algorithm, c.import.wrap);
    let arn = run.targets[index].arn.clone().unwrap_or_default();
    let public_key_sha256 = sha256_hex(&params.public_key_der);
    run.step = Step::Wrap;
    let (blob, mechanism, memory_locked) = match location {
        WrapLocation::Hsm => {
            // An in-HSM known-answer test always proves a plan; never fall back to the host.
            let plan = test.plan.ok_or_else(|| {
                refused(format!(
                    "the known-answer test proved no way to do {algorithm} inside the HSM; run `byok probe`"
                ))
            })?;
            let wrapping = run
                .hsm
                .import_rsa_public_key(&public.modulus(), &public.exponent())?;
            run.created.push(wrapping);
            run.targets[index].wrapping = Some(wrapping);
            // Exactly the plan the known-answer test proved on this token.
            let blob = wrap::wrap_in_hsm(run.hsm, plan, wrapping, key)?;
            (blob, plan.mechanism(), None)
        }
        WrapLocation::Host => {
            let material = run.hsm.extract_key_value(key)?;
            let locked = material.is_locked();
            let blob = wrap::host_wrap(&material, public, algorithm)?;
            drop(material);
            (blob, test.mechanism.clone(), Some(locked))
        }
    };
    let expected_len = algorithm.blob_len(public.bits());
    if blob.len() != expected_len {
        return Err(refused(format!(
            "the wrapped blob has {} bytes, expected {expected_len} for {algorithm} with RSA-{}; the token did not wrap as KMS expects",
            blob.len(),
            public.bits()
        )));
    }
    let blob_sha256 = sha256_hex(&blob);
    run.record(&KeyWrapped {
        target_index: index as u64,
        key_arn: arn,
        location: location.name().into(),
        mechanism,
        wrapping_algorithm: algorithm.kms_name().into(),
        oaep_hash: algorithm.oaep_hash().name().into(),
        aes_key_wrap: algorithm.is_rsa_aes().then(|| "RFC 5649".into()),
        wrapping_public_key_sha256: public_key_sha256.clone(),
        blob_sha256: blob_sha256.clone(),
        blob_length: blob.len() as u64,
        host_memory_locked: memory_locked,
    })?;
    let t = &mut run.targets[index];
    t.blob = Some(blob);
    t.blob_sha256 = Some(blob_sha256);
    t.public_key_sha256 = Some(public_key_sha256);
    t.parameters_valid_to = Some(params.parameters_valid_to);
    t.token = Some(params.import_token);
    t.status = Status::Wrapped;
    Ok(())
}
