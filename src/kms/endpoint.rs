//! Where KMS and STS calls go, and which endpoint overrides a ceremony accepts.
//!
//! The AWS SDK sends every call to the URL in `AWS_ENDPOINT_URL_KMS` or `AWS_ENDPOINT_URL`
//! when one is set. A variable left over from a test shell would make a real ceremony import
//! into a local emulator and sign a "successful" transcript, so byok refuses any endpoint set
//! in the environment unless the ceremony file names the same one (`[kms] endpoint`), and
//! then uses the file's for KMS and STS alike. This module decides, before any prompt; it
//! never sends anything.

/// The environment variables that move the SDK's KMS or STS endpoint, most specific first.
pub const ENV_VARS: [&str; 3] = [
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL",
];

/// The endpoint a ceremony uses, decided from the ceremony file and the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointChoice {
    /// `[kms] endpoint`, used for KMS and STS; `None`: AWS's regional endpoints.
    pub named: Option<String>,
    /// The environment variables that were set (to the named endpoint), in [`ENV_VARS`] order.
    pub env_vars: Vec<&'static str>,
}

/// An endpoint override the ceremony file does not name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "{var}={value} sends KMS calls to another endpoint, but the ceremony file names none; for tests and rehearsals add endpoint = \"{value}\" under [kms] in the ceremony file, for a real ceremony unset {var}"
    )]
    NotNamed { var: &'static str, value: String },
    #[error(
        "{var}={value} differs from [kms] endpoint = \"{named}\" in the ceremony file; unset {var}, or name that endpoint in the file"
    )]
    Different {
        var: &'static str,
        value: String,
        named: String,
    },
}

/// True for `http://HOST[:PORT]` or `https://HOST[:PORT]`, with at most a trailing `/`, no
/// user info, query or control character.
pub fn is_endpoint_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

/// An endpoint URL in the form the transcript compares: without a trailing `/`, scheme and
/// host in lower case.
pub fn normalize(s: &str) -> String {
    s.trim_end_matches('/').to_ascii_lowercase()
}

/// `scheme://authority` of a request URI (what the SDK really sent to).
pub fn origin_of(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            normalize(&format!("{scheme}://{authority}"))
        }
        None => normalize(uri),
    }
}

/// True for an origin of AWS's own endpoints (`https://…amazonaws.com`, `.amazonaws.com.cn`,
/// `.api.aws`): where the SDK sends requests when nothing overrides the endpoint.
pub fn is_aws_origin(origin: &str) -> bool {
    origin.strip_prefix("https://").is_some_and(|host| {
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        [".amazonaws.com", ".amazonaws.com.cn", ".api.aws"]
            .iter()
            .any(|suffix| host.ends_with(suffix))
    })
}

/// Decides the endpoint from `[kms] endpoint` and the environment (`env` reads a variable).
/// A variable set to anything but the named endpoint is refused.
pub fn choose(
    named: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<EndpointChoice, EndpointError> {
    let mut env_vars = Vec::new();
    for var in ENV_VARS {
        let Some(value) = env(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let shown = crate::text::escape(&value).into_owned();
        match named {
            None => return Err(EndpointError::NotNamed { var, value: shown }),
            Some(n) if normalize(n) != normalize(&value) => {
                return Err(EndpointError::Different {
                    var,
                    value: shown,
                    named: n.to_string(),
                });
            }
            Some(_) => env_vars.push(var),
        }
    }
    Ok(EndpointChoice {
        named: named.map(str::to_string),
        env_vars,
    })
}

/// [`choose`] with the process environment.
pub fn from_env(named: Option<&str>) -> Result<EndpointChoice, EndpointError> {
    choose(named, |var| std::env::var(var).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |var| {
            pairs
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn no_override_anywhere_is_aws() {
        assert_eq!(choose(None, env(&[])), Ok(EndpointChoice::default()));
    }

    #[test]
    fn an_override_the_file_does_not_name_is_refused() {
        for var in ENV_VARS {
            let e = choose(None, env(&[(var, "http://127.0.0.1:4566")])).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "{var}=http://127.0.0.1:4566 sends KMS calls to another endpoint, but the ceremony file names none; for tests and rehearsals add endpoint = \"http://127.0.0.1:4566\" under [kms] in the ceremony file, for a real ceremony unset {var}"
                )
            );
        }
    }

    #[test]
    fn a_different_override_is_refused_and_a_matching_one_accepted() {
        let e = choose(
            Some("http://127.0.0.1:4566"),
            env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")]),
        )
        .unwrap_err();
        assert!(matches!(
            e,
            EndpointError::Different {
                var: "AWS_ENDPOINT_URL",
                ..
            }
        ));
        let ok = choose(
            Some("http://127.0.0.1:4566"),
            env(&[
                ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:4566/"),
                ("AWS_ENDPOINT_URL", ""),
            ]),
        )
        .unwrap();
        assert_eq!(ok.env_vars, vec!["AWS_ENDPOINT_URL_KMS"]);
        assert_eq!(ok.named.as_deref(), Some("http://127.0.0.1:4566"));
    }

    #[test]
    fn a_control_character_in_the_environment_is_escaped() {
        let e = choose(None, env(&[("AWS_ENDPOINT_URL", "http://x\x1b[2K")])).unwrap_err();
        assert!(e.to_string().contains("http://x\\u{1b}[2K"), "{e}");
    }

    #[test]
    fn endpoint_urls() {
        assert!(is_endpoint_url("http://127.0.0.1:4566"));
        assert!(is_endpoint_url("https://kms.eu-west-1.amazonaws.com/"));
        for bad in [
            "127.0.0.1:4566",
            "http://",
            "http://h/path",
            "ftp://h",
            "http://u@h",
            "http://h\n",
        ] {
            assert!(!is_endpoint_url(bad), "{bad}");
        }
        assert_eq!(
            origin_of("http://127.0.0.1:4566/?x=1"),
            "http://127.0.0.1:4566"
        );
        assert_eq!(
            origin_of("https://KMS.us-east-1.amazonaws.com/"),
            "https://kms.us-east-1.amazonaws.com"
        );
        assert!(is_aws_origin("https://kms.us-east-1.amazonaws.com"));
        assert!(is_aws_origin("https://sts.cn-north-1.amazonaws.com.cn:443"));
        assert!(!is_aws_origin("http://kms.us-east-1.amazonaws.com"));
        assert!(!is_aws_origin("https://127.0.0.1:4566"));
        assert!(!is_aws_origin("https://amazonaws.com.evil.example"));
    }
}
