//! Is a delivery from the forge? GitHub signs the raw body with the
//! webhook secret (`X-Hub-Signature-256: sha256=HEX`, HMAC-SHA256); GitLab
//! sends the secret token itself (`X-Gitlab-Token`). Both are compared in
//! constant time; the token compare goes through SHA-256 digests, so not
//! even its length shows in the timing.

use hmac::{KeyInit as _, Mac as _};
use subtle::ConstantTimeEq as _;

type HmacSha256 = hmac::Hmac<sha2_011::Sha256>;

/// Check GitHub's `X-Hub-Signature-256` header over `body`.
pub fn github(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), String> {
    let header = header.ok_or("no X-Hub-Signature-256 header (is the webhook's secret set?)")?;
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or("X-Hub-Signature-256 is not `sha256=HEX`")?;
    let sig = hex::decode(hex_sig).map_err(|_| "X-Hub-Signature-256 is not hex")?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| "X-Hub-Signature-256 does not match the body and the webhook secret".into())
}

/// GitHub's signature of `body` (for tests and tools that sign).
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Check GitLab's `X-Gitlab-Token` header.
pub fn gitlab(secret: &[u8], header: Option<&str>) -> Result<(), String> {
    use sha2_011::Digest as _;
    let header = header.ok_or("no X-Gitlab-Token header (is the webhook's secret token set?)")?;
    let a = sha2_011::Sha256::digest(header.as_bytes());
    let b = sha2_011::Sha256::digest(secret);
    if bool::from(a.as_slice().ct_eq(b.as_slice())) {
        Ok(())
    } else {
        Err("X-Gitlab-Token does not match the webhook's secret token".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's own worked example ("Validating webhook deliveries"):
    /// secret "It's a Secret to Everybody", payload "Hello, World!".
    #[test]
    fn githubs_documented_example_verifies() {
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            github_signature(b"It's a Secret to Everybody", b"Hello, World!"),
            sig
        );
        github(b"It's a Secret to Everybody", b"Hello, World!", Some(sig)).unwrap();
        assert!(github(b"It's a Secret to Everybody", b"Hello, World?", Some(sig)).is_err());
        assert!(github(b"other", b"Hello, World!", Some(sig)).is_err());
        assert!(github(b"s", b"x", None).is_err());
        assert!(github(b"s", b"x", Some("sha1=00")).is_err());
        assert!(github(b"s", b"x", Some("sha256=zz")).is_err());
    }

    #[test]
    fn gitlab_tokens_compare_whole() {
        gitlab(b"tok", Some("tok")).unwrap();
        assert!(gitlab(b"tok", Some("to")).is_err());
        assert!(gitlab(b"tok", Some("tok ")).is_err());
        assert!(gitlab(b"tok", None).is_err());
    }
}
