//! Secrets and keys in configuration: where they are read from (inline, an environment
//! variable, a file), what is too weak to start with, and the providers' RSA public keys.

use super::Provider;

impl Provider {
    /// Current secret first, then the previous one (rotation). A named environment variable
    /// or file that holds nothing is an error, never "no secret": an empty key would let
    /// anyone sign.
    pub fn secrets(&self) -> Result<Vec<Vec<u8>>, String> {
        let current = resolve_secret(&self.secret, &self.secret_env, &self.secret_file)
            .map_err(|e| format!("secret{e}"))?;
        let previous = resolve_secret(
            &self.previous_secret,
            &self.previous_secret_env,
            &self.previous_secret_file,
        )
        .map_err(|e| format!("previous_secret{e}"))?;
        Ok(current
            .into_iter()
            .chain(previous)
            .map(String::into_bytes)
            .collect())
    }
}

impl Provider {
    /// The provider's RSA public keys, current first (public-key dialects).
    pub fn public_keys(&self) -> Result<Vec<rsa::RsaPublicKey>, String> {
        use rsa::pkcs8::DecodePublicKey;
        if self.public_key_file.is_empty() {
            return Err("public_key_file is required for this dialect".into());
        }
        let mut keys = Vec::new();
        for (key, file) in [
            ("public_key_file", &self.public_key_file),
            ("previous_public_key_file", &self.previous_public_key_file),
        ] {
            if file.is_empty() {
                continue;
            }
            let pem = std::fs::read_to_string(file)
                .map_err(|e| format!("{key}: cannot read {file}: {e}"))?;
            let public = rsa::RsaPublicKey::from_public_key_pem(&pem)
                .map_err(|e| format!("{key}: {file} is not a PEM RSA public key: {e}"))?;
            keys.push(public);
        }
        Ok(keys)
    }
}

/// The demo Hub88-style provider's public key (`config/keys/`). Its private half is published
/// in the repository so anyone can sign as the demo provider: demo only, like the secrets in
/// [`PUBLIC_DEMO_SECRETS`].
const DEMO_HUB88_PUBLIC_KEY: &str = include_str!("../../config/keys/demo-hub88-provider.pub.pem");

/// Whether `key` is the demo's public key (see [`DEMO_HUB88_PUBLIC_KEY`]).
pub fn is_public_demo_key(key: &rsa::RsaPublicKey) -> bool {
    use rsa::pkcs8::DecodePublicKey;
    rsa::RsaPublicKey::from_public_key_pem(DEMO_HUB88_PUBLIC_KEY).is_ok_and(|demo| demo == *key)
}

/// The shortest secret the gateway accepts (HMAC keys, and every secret it will hold).
pub const SECRET_BYTES_MIN: usize = 16;

/// The public demo values of the operational contract (some shorter than
/// [`SECRET_BYTES_MIN`]). They are accepted only while `demo.enabled` is on (a setup that seeds
/// play money and prints these values at start), never otherwise.
pub const PUBLIC_DEMO_SECRETS: &[&str] = &[
    "demo-secret",
    "demo-pp-secret",
    "demo-ss-secret",
    "demo-evo-token",
    "demo-strict-secret",
    "demo-psp-secret",
    DEMO_JWT_SECRET,
];

/// The access-token key of `config/demo.toml`: public, so demo only.
pub const DEMO_JWT_SECRET: &str = "demo-jwt-secret-public-never-use-in-production";

/// Why `secret` may not be used where at least `bytes_min` bytes are required, if it may not;
/// `key` names it in the message.
pub fn weak_secret(
    key: &str,
    secret: &[u8],
    bytes_min: usize,
    demo_enabled: bool,
) -> Option<String> {
    if secret.is_empty() {
        return Some(format!("{key} is empty"));
    }
    let public_demo = PUBLIC_DEMO_SECRETS.iter().any(|d| d.as_bytes() == secret);
    if public_demo {
        return (!demo_enabled).then(|| {
            format!("{key} is a public demo value, accepted only with demo.enabled = true")
        });
    }
    (secret.len() < bytes_min).then(|| {
        format!(
            "{key} is {} bytes; at least {bytes_min} are required",
            secret.len()
        )
    })
}

/// The first of: the named environment variable, the named file, the inline value. A named
/// variable that is unset or empty, or a named file that is unreadable or empty, is an error.
/// The error text continues the key name (`_env: ...`).
pub(super) fn resolve_secret(
    inline: &str,
    env: &str,
    file: &str,
) -> Result<Option<String>, String> {
    if !env.is_empty() {
        return match std::env::var(env) {
            Ok(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(format!(
                "_env: environment variable {env} is unset or empty"
            )),
        };
    }
    if !file.is_empty() {
        let value = std::fs::read_to_string(file)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("_file: cannot read {file}: {e}"))?;
        if value.is_empty() {
            return Err(format!("_file: {file} is empty"));
        }
        return Ok(Some(value));
    }
    Ok((!inline.is_empty()).then(|| inline.to_string()))
}

/// The database URL: the environment variable when set and non-empty (`DATABASE_URL` is
/// usually unset, which selects the embedded cluster), else the file, else the inline value.
pub(super) fn resolve_url(inline: &str, env: &str, file: &str) -> Result<Option<String>, String> {
    if !env.is_empty() {
        if let Ok(value) = std::env::var(env) {
            if !value.is_empty() {
                return Ok(Some(value));
            }
        }
    }
    resolve_secret(inline, "", file)
}
