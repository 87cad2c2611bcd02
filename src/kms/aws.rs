//! [`Kms`] over `aws-sdk-kms`, on a private multi-threaded tokio runtime.
//!
//! Credentials come from the standard AWS credential chain; the region comes from the ceremony
//! file (a key ARN of another region is sent to that region). A ceremony names its endpoint in
//! the file (`[kms] endpoint`, used for KMS and STS; see [`super::endpoint`]); [`AwsKms::new`]
//! (tests, tools) takes it from the environment like any SDK client. Every client records the
//! URL each request is really sent to (an SDK interceptor), which is what `kms_identity`
//! records. The SDK's own retries are off: every call is
//! one attempt with a bounded time, and [`super::Paced`] decides what may be sent again
//! (ImportKeyMaterial never is: the SDK's standard policy would resend it after a timeout).
//! Errors keep KMS's code and message, or the transport's error chain in words.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::{
    AlgorithmSpec, EncryptionAlgorithmSpec, ExpirationModelType, IncludeKeyMaterial, KeySpec,
    KeyUsageType, OriginType, Tag,
};
use aws_smithy_types::{Blob, DateTime};
use time::OffsetDateTime;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::{
    Expiration, ImportParameters, ImportToken, ImportType, KeyInfo, KeyMaterialInfo, Kms, KmsError,
    KmsFailure, Whereabouts,
};
use crate::wrap::{WrappingAlgorithm, WrappingKeySpec};

/// Default time for one call (one attempt).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// KMS through the AWS SDK.
pub struct AwsKms {
    runtime: tokio::runtime::Runtime,
    base: aws_config::SdkConfig,
    region: String,
    /// `[kms] endpoint`, set on every client (KMS and STS) so that it wins over the
    /// environment and any profile.
    endpoint: Option<String>,
    /// One client per region (a target's ARN may name another region).
    clients: Mutex<HashMap<String, aws_sdk_kms::Client>>,
    /// The origin (`scheme://host[:port]`) of the last request each client sent, by client:
    /// `kms:REGION` or `sts`.
    sent_to: SentTo,
}

type SentTo = Arc<Mutex<HashMap<String, String>>>;

/// Records where each request is really sent, after endpoint resolution, just before it goes.
#[derive(Debug)]
struct Capture {
    client: String,
    sent_to: SentTo,
}

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "byok endpoint capture"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let origin = super::endpoint::origin_of(context.request().uri());
        // The map only records; a poisoned lock leaves it intact.
        self.sent_to
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.client.clone(), origin);
        Ok(())
    }
}

impl AwsKms {
    /// A client for `region` from the standard AWS environment (endpoint included), each call
    /// bounded by [`DEFAULT_CALL_TIMEOUT`]. Ceremonies use [`AwsKms::for_ceremony`].
    pub fn new(region: &str) -> Result<Self, KmsError> {
        Self::for_ceremony(region, DEFAULT_CALL_TIMEOUT, None)
    }

    /// A client whose calls each get at most `call_timeout`, sent to `endpoint` when given
    /// (`[kms] endpoint`, checked against the environment by [`super::endpoint::choose`]).
    pub fn for_ceremony(
        region: &str,
        call_timeout: Duration,
        endpoint: Option<&str>,
    ) -> Result<Self, KmsError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| KmsError {
                operation: "client setup",
                failure: KmsFailure::Unreachable,
                code: None,
                status: None,
                message: format!("cannot start the async runtime: {e}"),
            })?;
        let http = https_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        let base = runtime.block_on(
            loader
                .region(aws_config::Region::new(region.to_string()))
                .http_client(http)
                // One attempt: byok decides what may be sent again (kms::pace).
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(call_timeout)
                        .operation_timeout(call_timeout)
                        .build(),
                )
                .load(),
        );
        Ok(AwsKms {
            runtime,
            base,
            region: region.to_string(),
            endpoint: endpoint.map(str::to_string),
            clients: Mutex::new(HashMap::new()),
            sent_to: SentTo::default(),
        })
    }

    fn capture(&self, client: String) -> Capture {
        Capture {
            client,
            sent_to: self.sent_to.clone(),
        }
    }

    /// Where the client `client` last sent a request.
    fn sent_to(&self, client: &str) -> Option<String> {
        self.sent_to
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(client)
            .cloned()
    }

    fn region_of<'k>(&'k self, key: &'k str) -> &'k str {
        key.strip_prefix("arn:")
            .and_then(|r| r.split(':').nth(2))
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.region)
    }

    /// The client for the region of `key` (an ARN's region, else the ceremony's).
    fn client(&self, key: &str) -> aws_sdk_kms::Client {
        self.client_in(self.region_of(key))
    }

    /// The client for `region`.
    fn client_in(&self, region: &str) -> aws_sdk_kms::Client {
        let region = region.to_string();
        // The map only caches clients; a poisoned lock leaves it intact.
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients
            .entry(region.clone())
            .or_insert_with(|| {
                let mut config = aws_sdk_kms::config::Builder::from(&self.base)
                    .region(aws_config::Region::new(region.clone()))
                    .interceptor(self.capture(format!("kms:{region}")));
                if let Some(url) = &self.endpoint {
                    config = config.endpoint_url(url);
                }
                let config = config.build();
                aws_sdk_kms::Client::from_conf(config)
            })
            .clone()
    }
}

/// The HTTPS client every byok SDK client uses: rustls with ring (no aws-lc C build).
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The error chain in words: each cause's `Display`, without repeats.
fn words(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut next = e.source();
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

fn sdk_error<E, R>(operation: &'static str, e: SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let status = match &e {
        SdkError::ServiceError(ctx) => ctx.raw().status_code(),
        SdkError::ResponseError(ctx) => ctx.raw().status_code(),
        _ => None,
    };
    match e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.into_err();
            KmsError {
                operation,
                failure: KmsFailure::Service,
                code: err.code().map(str::to_string),
                status,
                message: err
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| words(&err)),
            }
        }
        SdkError::DispatchFailure(ref d) => {
            // A connector error before any byte was sent (refused, DNS, TLS) is unreachable;
            // anything after that may have reached KMS.
            let sent = d
                .as_connector_error()
                .is_none_or(|c| !(c.is_io() && words(&e).contains("connect")));
            KmsError {
                operation,
                failure: if sent {
                    KmsFailure::NoAnswer
                } else {
                    KmsFailure::Unreachable
                },
                code: None,
                status,
                message: words(&e),
            }
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => KmsError {
            operation,
            failure: KmsFailure::NoAnswer,
            code: None,
            status,
            message: words(&e),
        },
        other => KmsError {
            operation,
            failure: KmsFailure::BadResponse,
            code: other.code().map(str::to_string),
            status,
            message: words(&other),
        },
    }
}

/// The HTTP status of a raw response.
trait HttpStatus {
    fn status_code(&self) -> Option<u16>;
}

impl HttpStatus for aws_smithy_runtime_api::client::orchestrator::HttpResponse {
    fn status_code(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
}

fn missing(operation: &'static str, what: &str) -> KmsError {
    KmsError {
        operation,
        failure: KmsFailure::BadResponse,
        code: None,
        status: None,
        message: format!("the response has no {what}"),
    }
}

fn to_time(operation: &'static str, t: &DateTime) -> Result<OffsetDateTime, KmsError> {
    OffsetDateTime::from_unix_timestamp(t.secs())
        .map(|d| d + time::Duration::nanoseconds(i64::from(t.subsec_nanos())))
        .map_err(|_| missing(operation, "valid timestamp"))
}

fn key_info(op: &'static str, m: &aws_sdk_kms::types::KeyMetadata) -> Result<KeyInfo, KmsError> {
    Ok(KeyInfo {
        arn: m.arn().ok_or_else(|| missing(op, "Arn"))?.to_string(),
        key_id: m.key_id().to_string(),
        origin: m
            .origin()
            .map(|o| o.as_str().to_string())
            .unwrap_or_default(),
        key_spec: m
            .key_spec()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        key_usage: m
            .key_usage()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        state: m
            .key_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        enabled: m.enabled(),
        expiration_model: m.expiration_model().map(|s| s.as_str().to_string()),
        valid_to: m.valid_to().map(|t| to_time(op, t)).transpose()?,
        current_key_material_id: m.current_key_material_id().map(str::to_string),
        multi_region: m.multi_region(),
    })
}

impl Kms for AwsKms {
    fn describe_key(&self, key: &str) -> Result<KeyInfo, KmsError> {
        const OP: &str = "DescribeKey";
        let out = self
            .runtime
            .block_on(self.client(key).describe_key().key_id(key).send())
            .map_err(|e| sdk_error(OP, e))?;
        key_info(
            OP,
            out.key_metadata()
                .ok_or_else(|| missing(OP, "KeyMetadata"))?,
        )
    }

    fn create_key(
        &self,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<KeyInfo, KmsError> {
        const OP: &str = "CreateKey";
        let mut req = self
            .client("")
            .create_key()
            .origin(OriginType::External)
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .description(description);
        for (k, v) in tags {
            let tag = Tag::builder()
                .tag_key(k)
                .tag_value(v)
                .build()
                .map_err(|e| KmsError {
                    operation: OP,
                    failure: KmsFailure::BadResponse,
                    code: None,
                    status: None,
                    message: format!("tag {k:?}: {e}"),
                })?;
            req = req.tags(tag);
        }
        let out = self
            .runtime
            .block_on(req.send())
            .map_err(|e| sdk_error(OP, e))?;
        key_info(
            OP,
            out.key_metadata()
                .ok_or_else(|| missing(OP, "KeyMetadata"))?,
        )
    }

    fn create_alias(&self, alias: &str, key_arn: &str) -> Result<(), KmsError> {
        const OP: &str = "CreateAlias";
        self.runtime
            .block_on(
                self.client(key_arn)
                    .create_alias()
                    .alias_name(alias)
                    .target_key_id(key_arn)
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    fn update_alias(&self, alias: &str, key_arn: &str) -> Result<(), KmsError> {
        const OP: &str = "UpdateAlias";
        // TargetKeyId is sent as the key id, which KMS takes as well as the ARN (the alias and
        // the key are in one account and region): LocalStack 2026.3.0 stores an ARN given
        // here verbatim, and DescribeKey of the alias then answers NotFoundException.
        let key_id = key_arn.rsplit_once(":key/").map_or(key_arn, |(_, id)| id);
        self.runtime
            .block_on(
                self.client(key_arn)
                    .update_alias()
                    .alias_name(alias)
                    .target_key_id(key_id)
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    fn list_resource_tags(&self, key_arn: &str) -> Result<BTreeMap<String, String>, KmsError> {
        const OP: &str = "ListResourceTags";
        let client = self.client(key_arn);
        let mut tags = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .runtime
                .block_on(
                    client
                        .list_resource_tags()
                        .key_id(key_arn)
                        .set_marker(marker.clone())
                        .send(),
                )
                .map_err(|e| sdk_error(OP, e))?;
            for t in page.tags() {
                tags.insert(t.tag_key().to_string(), t.tag_value().to_string());
            }
            match (page.truncated(), page.next_marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(tags)
    }

    fn find_tagged_keys(&self, key: &str, value: &str) -> Result<Vec<String>, KmsError> {
        let client = self.client("");
        let mut found = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .runtime
                .block_on(
                    client
                        .list_keys()
                        .limit(1000)
                        .set_marker(marker.clone())
                        .send(),
                )
                .map_err(|e| sdk_error("ListKeys", e))?;
            for entry in page.keys() {
                let Some(arn) = entry.key_arn() else { continue };
                let tags = self
                    .runtime
                    .block_on(client.list_resource_tags().key_id(arn).send())
                    .map_err(|e| sdk_error("ListResourceTags", e))?;
                if tags
                    .tags()
                    .iter()
                    .any(|t| t.tag_key() == key && t.tag_value() == value)
                {
                    found.push(arn.to_string());
                }
            }
            match (page.truncated(), page.next_marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }

    fn get_parameters_for_import(
        &self,
        key_arn: &str,
        algorithm: WrappingAlgorithm,
        spec: WrappingKeySpec,
    ) -> Result<ImportParameters, KmsError> {
        const OP: &str = "GetParametersForImport";
        let out = self
            .runtime
            .block_on(
                self.client(key_arn)
                    .get_parameters_for_import()
                    .key_id(key_arn)
                    .wrapping_algorithm(AlgorithmSpec::from(algorithm.kms_name()))
                    .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::from(spec.kms_name()))
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok(ImportParameters {
            key_id: out
                .key_id()
                .ok_or_else(|| missing(OP, "KeyId"))?
                .to_string(),
            public_key_der: out
                .public_key()
                .ok_or_else(|| missing(OP, "PublicKey"))?
                .as_ref()
                .to_vec(),
            import_token: ImportToken::new(
                out.import_token()
                    .ok_or_else(|| missing(OP, "ImportToken"))?
                    .as_ref()
                    .to_vec(),
            ),
            parameters_valid_to: to_time(
                OP,
                out.parameters_valid_to()
                    .ok_or_else(|| missing(OP, "ParametersValidTo"))?,
            )?,
        })
    }

    fn import_key_material(
        &self,
        key_arn: &str,
        token: &ImportToken,
        encrypted_key_material: &[u8],
        expiration: Expiration,
        import_type: ImportType<'_>,
        description: Option<&str>,
    ) -> Result<Option<String>, KmsError> {
        const OP: &str = "ImportKeyMaterial";
        let mut req = self
            .client(key_arn)
            .import_key_material()
            .key_id(key_arn)
            .import_token(Blob::new(token.as_bytes().to_vec()))
            .encrypted_key_material(Blob::new(encrypted_key_material.to_vec()))
            .expiration_model(ExpirationModelType::from(expiration.model()))
            .import_type(aws_sdk_kms::types::ImportType::from(import_type.name()));
        if let Some(valid_to) = expiration.valid_to() {
            req = req.valid_to(DateTime::from_secs(valid_to.unix_timestamp()));
        }
        if let Some(d) = description {
            req = req.key_material_description(d);
        }
        if let Some(id) = import_type.key_material_id() {
            req = req.key_material_id(id);
        }
        let out = self
            .runtime
            .block_on(req.send())
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out.key_material_id().map(str::to_string))
    }

    fn rotate_key_on_demand(&self, key_arn: &str) -> Result<(), KmsError> {
        const OP: &str = "RotateKeyOnDemand";
        self.runtime
            .block_on(
                self.client(key_arn)
                    .rotate_key_on_demand()
                    .key_id(key_arn)
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    fn list_key_materials(&self, key_arn: &str) -> Result<Vec<KeyMaterialInfo>, KmsError> {
        const OP: &str = "ListKeyRotations";
        let client = self.client(key_arn);
        let mut found = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .runtime
                .block_on(
                    client
                        .list_key_rotations()
                        .key_id(key_arn)
                        .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
                        .set_marker(marker.clone())
                        .send(),
                )
                .map_err(|e| sdk_error(OP, e))?;
            for r in page.rotations() {
                found.push(KeyMaterialInfo {
                    key_material_id: r.key_material_id().unwrap_or_default().to_string(),
                    import_state: r.import_state().map(|s| s.as_str().to_string()),
                    key_material_state: r.key_material_state().map(|s| s.as_str().to_string()),
                });
            }
            match (page.truncated(), page.next_marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }

    fn encrypt(&self, key_arn: &str, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
        const OP: &str = "Encrypt";
        let out = self
            .runtime
            .block_on(
                self.client(key_arn)
                    .encrypt()
                    .key_id(key_arn)
                    .plaintext(Blob::new(plaintext.to_vec()))
                    .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out
            .ciphertext_blob()
            .ok_or_else(|| missing(OP, "CiphertextBlob"))?
            .as_ref()
            .to_vec())
    }

    fn decrypt(&self, key_arn: &str, ciphertext: &[u8]) -> Result<(Vec<u8>, String), KmsError> {
        const OP: &str = "Decrypt";
        let out = self
            .runtime
            .block_on(
                self.client(key_arn)
                    .decrypt()
                    .key_id(key_arn)
                    .ciphertext_blob(Blob::new(ciphertext.to_vec()))
                    .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok((
            out.plaintext()
                .ok_or_else(|| missing(OP, "Plaintext"))?
                .as_ref()
                .to_vec(),
            out.key_id().unwrap_or_default().to_string(),
        ))
    }

    fn whereabouts(&self, probe_key: &str) -> Result<Whereabouts, KmsError> {
        const OP: &str = "GetCallerIdentity";
        let mut sts = aws_sdk_sts::config::Builder::from(&self.base)
            .region(aws_config::Region::new(self.region.clone()))
            .interceptor(self.capture("sts".into()));
        if let Some(url) = &self.endpoint {
            sts = sts.endpoint_url(url);
        }
        let sts = aws_sdk_sts::Client::from_conf(sts.build());
        let out = self
            .runtime
            .block_on(sts.get_caller_identity().send())
            .map_err(|e| sdk_error(OP, e))?;
        let account = out
            .account()
            .ok_or_else(|| missing(OP, "Account"))?
            .to_string();
        let caller_arn = out.arn().ok_or_else(|| missing(OP, "Arn"))?.to_string();
        let sts_endpoint = self
            .sent_to("sts")
            .ok_or_else(|| missing(OP, "request URL (no request was sent)"))?;
        // Any answer from KMS, an error code included, shows where the request went.
        match self.describe_key(probe_key) {
            Ok(_) => {}
            Err(e) if e.failure == KmsFailure::Service => {}
            Err(e) => return Err(e),
        }
        let client = format!("kms:{}", self.region_of(probe_key));
        let endpoint = self
            .sent_to(&client)
            .ok_or_else(|| missing("DescribeKey", "request URL (no request was sent)"))?;
        Ok(Whereabouts {
            endpoint,
            sts_endpoint,
            account,
            caller_arn,
        })
    }
}

fn page_marker(truncated: bool, next: Option<&str>) -> Option<String> {
    next.filter(|_| truncated).map(str::to_string)
}

impl super::fleet::FleetKms for AwsKms {
    fn list_keys_page(
        &self,
        region: &str,
        marker: Option<&str>,
        limit: i32,
    ) -> Result<super::fleet::Page<String>, KmsError> {
        const OP: &str = "ListKeys";
        let page = self
            .runtime
            .block_on(
                self.client_in(region)
                    .list_keys()
                    .limit(limit)
                    .set_marker(marker.map(str::to_string))
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok(super::fleet::Page {
            items: page
                .keys()
                .iter()
                .filter_map(|k| k.key_arn().map(str::to_string))
                .collect(),
            next: page_marker(page.truncated(), page.next_marker()),
        })
    }

    fn list_aliases_page(
        &self,
        region: &str,
        marker: Option<&str>,
        limit: i32,
    ) -> Result<super::fleet::Page<super::fleet::AliasEntry>, KmsError> {
        const OP: &str = "ListAliases";
        let page = self
            .runtime
            .block_on(
                self.client_in(region)
                    .list_aliases()
                    .limit(limit)
                    .set_marker(marker.map(str::to_string))
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok(super::fleet::Page {
            items: page
                .aliases()
                .iter()
                .filter_map(|a| {
                    Some(super::fleet::AliasEntry {
                        name: a.alias_name()?.to_string(),
                        target_key_id: a.target_key_id().map(str::to_string),
                    })
                })
                .collect(),
            next: page_marker(page.truncated(), page.next_marker()),
        })
    }

    fn describe_key_detail(&self, key_arn: &str) -> Result<super::fleet::KeyDetail, KmsError> {
        const OP: &str = "DescribeKey";
        let out = self
            .runtime
            .block_on(self.client(key_arn).describe_key().key_id(key_arn).send())
            .map_err(|e| sdk_error(OP, e))?;
        let m = out
            .key_metadata()
            .ok_or_else(|| missing(OP, "KeyMetadata"))?;
        let mrc = m.multi_region_configuration();
        Ok(super::fleet::KeyDetail {
            info: key_info(OP, m)?,
            creation_date: m.creation_date().map(|t| to_time(OP, t)).transpose()?,
            multi_region_role: mrc
                .and_then(|c| c.multi_region_key_type())
                .map(|t| t.as_str().to_string()),
            primary_arn: mrc
                .and_then(|c| c.primary_key())
                .and_then(|k| k.arn())
                .map(str::to_string),
            replica_arns: mrc
                .map(|c| {
                    c.replica_keys()
                        .iter()
                        .filter_map(|k| k.arn().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn tags_page(
        &self,
        key_arn: &str,
        marker: Option<&str>,
    ) -> Result<super::fleet::Page<(String, String)>, KmsError> {
        const OP: &str = "ListResourceTags";
        let page = self
            .runtime
            .block_on(
                self.client(key_arn)
                    .list_resource_tags()
                    .key_id(key_arn)
                    .set_marker(marker.map(str::to_string))
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        Ok(super::fleet::Page {
            items: page
                .tags()
                .iter()
                .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
                .collect(),
            next: page_marker(page.truncated(), page.next_marker()),
        })
    }

    fn rotations_page(
        &self,
        key_arn: &str,
        marker: Option<&str>,
    ) -> Result<super::fleet::Page<super::fleet::Rotation>, KmsError> {
        const OP: &str = "ListKeyRotations";
        let page = self
            .runtime
            .block_on(
                self.client(key_arn)
                    .list_key_rotations()
                    .key_id(key_arn)
                    .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
                    .set_marker(marker.map(str::to_string))
                    .send(),
            )
            .map_err(|e| sdk_error(OP, e))?;
        let mut items = Vec::new();
        for r in page.rotations() {
            items.push(super::fleet::Rotation {
                key_material_id: r
                    .key_material_id()
                    .ok_or_else(|| missing(OP, "KeyMaterialId"))?
                    .to_string(),
                description: r.key_material_description().map(str::to_string),
                import_state: r.import_state().map(|s| s.as_str().to_string()),
                key_material_state: r.key_material_state().map(|s| s.as_str().to_string()),
                expiration_model: r.expiration_model().map(|s| s.as_str().to_string()),
                valid_to: r.valid_to().map(|t| to_time(OP, t)).transpose()?,
                rotation_date: r.rotation_date().map(|t| to_time(OP, t)).transpose()?,
                rotation_type: r.rotation_type().map(|s| s.as_str().to_string()),
            });
        }
        Ok(super::fleet::Page {
            items,
            next: page_marker(page.truncated(), page.next_marker()),
        })
    }
}

/// The region the standard AWS configuration names (AWS_REGION, AWS_DEFAULT_REGION, the
/// profile, the instance metadata), if any.
pub fn configured_region() -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let http = https_client();
    runtime
        .block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .load(),
        )
        .region()
        .map(|r| r.to_string())
        .filter(|r| !r.is_empty())
}
