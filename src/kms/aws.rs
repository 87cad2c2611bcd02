//! [`Kms`] over `aws-sdk-kms`, on a private current-thread tokio runtime.
//!
//! Endpoint and credentials come from the standard AWS environment (`AWS_ENDPOINT_URL_KMS`,
//! `AWS_ENDPOINT_URL`, the credential chain); the region comes from the ceremony file. Retries
//! are few on purpose: LocalStack answers a bad blob with HTTP 500, which the SDK would retry.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::{AlgorithmSpec, EncryptionAlgorithmSpec, ExpirationModelType};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::{Blob, DateTime};
use time::OffsetDateTime;

use super::{Expiration, ImportParameters, ImportToken, KeyInfo, Kms, KmsError, KmsFailure};
use crate::wrap::{WrappingAlgorithm, WrappingKeySpec};

/// KMS through the AWS SDK.
pub struct AwsKms {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_kms::Client,
}

impl AwsKms {
    /// Builds a client for `region` from the standard AWS environment.
    pub fn new(region: &str) -> Result<Self, KmsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KmsError {
                operation: "client setup",
                failure: KmsFailure::Unreachable,
                code: None,
                message: format!("cannot start the async runtime: {e}"),
            })?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = runtime.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .region(aws_config::Region::new(region.to_string()))
                .http_client(http)
                .retry_config(RetryConfig::standard().with_max_attempts(2))
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(Duration::from_secs(30))
                        .operation_timeout(Duration::from_secs(90))
                        .build(),
                )
                .load(),
        );
        Ok(AwsKms {
            client: aws_sdk_kms::Client::new(&config),
            runtime,
        })
    }
}

fn sdk_error<E, R>(operation: &'static str, e: SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(ctx) => KmsError {
            operation,
            failure: KmsFailure::Service,
            code: ctx.err().code().map(str::to_string),
            message: ctx
                .err()
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| DisplayErrorContext(&e).to_string()),
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => KmsError {
            operation,
            failure: KmsFailure::Unreachable,
            code: None,
            message: DisplayErrorContext(&e).to_string(),
        },
        _ => KmsError {
            operation,
            failure: KmsFailure::Service,
            code: e.code().map(str::to_string),
            message: DisplayErrorContext(&e).to_string(),
        },
    }
}

fn missing(operation: &'static str, what: &str) -> KmsError {
    KmsError {
        operation,
        failure: KmsFailure::BadResponse,
        code: None,
        message: format!("the response has no {what}"),
    }
}

fn to_time(operation: &'static str, t: &DateTime) -> Result<OffsetDateTime, KmsError> {
    OffsetDateTime::from_unix_timestamp(t.secs())
        .map(|d| d + time::Duration::nanoseconds(i64::from(t.subsec_nanos())))
        .map_err(|_| missing(operation, "valid timestamp"))
}

impl Kms for AwsKms {
    fn describe_key(&self, key: &str) -> Result<KeyInfo, KmsError> {
        const OP: &str = "DescribeKey";
        let out = self
            .runtime
            .block_on(self.client.describe_key().key_id(key).send())
            .map_err(|e| sdk_error(OP, e))?;
        let m = out
            .key_metadata()
            .ok_or_else(|| missing(OP, "KeyMetadata"))?;
        Ok(KeyInfo {
            arn: m.arn().ok_or_else(|| missing(OP, "Arn"))?.to_string(),
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
            valid_to: m.valid_to().map(|t| to_time(OP, t)).transpose()?,
            current_key_material_id: m.current_key_material_id().map(str::to_string),
        })
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
                self.client
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
    ) -> Result<Option<String>, KmsError> {
        const OP: &str = "ImportKeyMaterial";
        let mut req = self
            .client
            .import_key_material()
            .key_id(key_arn)
            .import_token(Blob::new(token.as_bytes().to_vec()))
            .encrypted_key_material(Blob::new(encrypted_key_material.to_vec()))
            .expiration_model(ExpirationModelType::from(expiration.model()));
        if let Some(valid_to) = expiration.valid_to() {
            req = req.valid_to(DateTime::from_secs(valid_to.unix_timestamp()));
        }
        let out = self
            .runtime
            .block_on(req.send())
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out.key_material_id().map(str::to_string))
    }

    fn encrypt(&self, key_arn: &str, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
        const OP: &str = "Encrypt";
        let out = self
            .runtime
            .block_on(
                self.client
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
                self.client
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
}
