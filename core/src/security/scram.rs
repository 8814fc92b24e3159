//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, run from the verifier Postgres keeps.
//!
//! Postgres stores a role's password as `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
//! in `pg_authid.rolpassword`. That is exactly what a SCRAM server needs: the client proves
//! it knows the password by a proof checked against StoredKey, and the server proves it
//! knows the verifier with a signature from ServerKey. So the Kafka password is the role's
//! Postgres password and nothing new is stored. PLAIN checks a cleartext password against
//! the same verifier (or an `md5` one).
//!
//! The exchange here is pure: the caller fetches the verifier and decides what a refusal
//! looks like to the client.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Iterations of the stand-in verifier used for unknown roles (Postgres's default).
const MOCK_ITERATIONS: u32 = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the client's final nonce is not the exchange's")]
    NonceMismatch,
    #[error("wrong password (the SCRAM proof does not match the verifier)")]
    WrongProof,
    #[error("the role's password is not a SCRAM-SHA-256 verifier")]
    NotScram,
}

/// The most PBKDF2 iterations a verifier may ask for (Kafka's own SCRAM limit; Postgres's
/// default `scram_iterations` is 4,096). A role may set its own verifier, so the count is
/// the caller's choice: above this, a login is refused as a wrong password would be,
/// without hashing.
pub const MAX_ITERATIONS: u32 = 16_384;

/// A parsed `SCRAM-SHA-256$...` verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl Verifier {
    /// Why a login with this verifier is refused before any hashing, if it is.
    pub fn refusal(&self, user: &str) -> Option<String> {
        (self.iterations > MAX_ITERATIONS).then(|| {
            format!(
                "role \"{user}\": its SCRAM verifier asks for {} iterations, more than the {MAX_ITERATIONS} pg_kafka computes (set the password again with scram_iterations at most {MAX_ITERATIONS})",
                self.iterations
            )
        })
    }

    /// Parses Postgres's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Verifier {
            iterations: iterations.parse().ok().filter(|n| *n > 0)?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?.try_into().ok()?,
            server_key: B64.decode(server).ok()?.try_into().ok()?,
        })
    }

    /// A verifier for `password`, as Postgres would store it with this salt and count.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// A verifier nobody knows the password of, stable per user name, so an unknown role
    /// runs the same exchange as a known one and fails only at the proof (as Postgres's
    /// own mock authentication does).
    pub fn mock(user: &str, secret: &[u8; 32]) -> Verifier {
        let salt = hmac(secret, user.as_bytes())[..16].to_vec();
        let key = hmac(secret, b"mock key");
        Verifier { iterations: MOCK_ITERATIONS, salt, stored_key: key, server_key: key }
    }

    /// Whether `password` matches (PLAIN): recomputes StoredKey, compares in constant time.
    pub fn matches_password(&self, password: &str) -> bool {
        let candidate = Verifier::from_password(password, &self.salt, self.iterations);
        bool::from(candidate.stored_key.ct_eq(&self.stored_key))
    }

    /// The verifier as Postgres stores it.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// Whether `password` matches Postgres's `md5<hex(md5(password || user))>` verifier.
pub fn md5_matches(verifier: &str, user: &str, password: &str) -> bool {
    let Some(expected) = verifier.strip_prefix("md5") else { return false };
    let digest = md5::Md5::digest([password.as_bytes(), user.as_bytes()].concat());
    let actual: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    bool::from(actual.as_bytes().ct_eq(expected.as_bytes()))
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The client's first message: who, and its nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name, with SCRAM's `=2C` / `=3D` escapes undone.
    pub user: String,
    nonce: String,
    /// `n=...,r=...[,extensions]`, which the signatures cover.
    bare: String,
    /// `n,,` or `y,,` (or with an authzid), echoed back base64-encoded in `c=`.
    gs2_header: String,
}

impl ClientFirst {
    pub fn parse(message: &[u8]) -> Result<ClientFirst, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().ok_or(ScramError::Malformed("empty"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no user"))?;
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad GS2 flag")),
        }
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("bad authzid"));
        }
        let mut attributes = bare.split(',');
        let user = attributes.next().and_then(|a| a.strip_prefix("n=")).ok_or(ScramError::Malformed("no n= attribute"))?;
        let nonce = attributes.next().and_then(|a| a.strip_prefix("r=")).ok_or(ScramError::Malformed("no r= attribute"))?;
        if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(ScramError::Malformed("bad nonce"));
        }
        Ok(ClientFirst {
            user: unescape_user(user)?,
            nonce: nonce.to_owned(),
            bare: bare.to_owned(),
            gs2_header: format!("{flag},{authzid},"),
        })
    }
}

/// Undoes SCRAM's `=2C` (comma) and `=3D` (equals) escapes; any other `=` is malformed.
fn unescape_user(raw: &str) -> Result<String, ScramError> {
    let mut user = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('=') {
        user.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).ok_or(ScramError::Malformed("bad escape in user name"))?;
        user.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        });
        rest = &rest[at + 3..];
    }
    user.push_str(rest);
    if user.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(user)
}

/// The server's side after answering the client's first message.
pub struct ServerFirst {
    client: ClientFirst,
    /// `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`, sent to the client.
    pub message: String,
    verifier: Verifier,
}

impl ServerFirst {
    /// Answers `client` for `verifier`, adding `server_nonce` (random bytes) to its nonce.
    pub fn new(client: ClientFirst, verifier: Verifier, server_nonce: &[u8]) -> ServerFirst {
        let nonce = format!("{}{}", client.nonce, B64.encode(server_nonce));
        let message = format!("r={nonce},s={},i={}", B64.encode(&verifier.salt), verifier.iterations);
        ServerFirst { client, message, verifier }
    }

    /// Checks the client's final message; on success returns the server's final message
    /// (`v=<ServerSignature>`) for the client to check.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes.next().and_then(|a| a.strip_prefix("c=")).ok_or(ScramError::Malformed("no c= attribute"))?;
        let nonce = attributes.next().and_then(|a| a.strip_prefix("r=")).ok_or(ScramError::Malformed("no r= attribute"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.client.gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBinding);
        }
        let expected_nonce = self.message.split(',').next().and_then(|r| r.strip_prefix("r=")).unwrap_or_default();
        // librdkafka before 2.6.1 (Debian's kcat, for one) sends its own nonce again in
        // front of the exchange's (librdkafka#4895); Kafka 3.x accepted that, and so do
        // we. The exchange's nonce, with the server's random part, must still be there.
        let buggy_librdkafka_nonce = format!("{}{expected_nonce}", self.client.nonce);
        let matches = |wanted: &str| bool::from(nonce.as_bytes().ct_eq(wanted.as_bytes()));
        if !matches(expected_nonce) && !matches(&buggy_librdkafka_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let proof: [u8; 32] =
            B64.decode(proof).ok().and_then(|p| p.try_into().ok()).ok_or(ScramError::Malformed("proof is not 32 base64 bytes"))?;
        let auth_message = format!("{},{},{}", self.client.bare, self.message, without_proof);
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(client_signature).map(|(p, s)| p ^ s).collect();
        let stored_key: [u8; 32] = Sha256::digest(&client_key).into();
        if !bool::from(stored_key.ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// A SCRAM client, for tests: the client's half of the same exchange.
#[cfg(any(test, feature = "testing"))]
pub mod client {
    use super::*;

    pub fn first(user: &str, nonce: &str) -> String {
        format!("n,,n={},r={nonce}", user.replace('=', "=3D").replace(',', "=2C"))
    }

    /// The client's final message for `server_first` with `password`, and the server
    /// signature it expects back.
    pub fn final_message(client_first: &str, server_first: &str, password: &str) -> (String, String) {
        let nonce = &server_first[2..server_first.find(',').unwrap()];
        final_message_with_nonce(client_first, server_first, password, nonce)
    }

    /// Like [`final_message`], sending `nonce` as the final message's `r=`.
    pub fn final_message_with_nonce(client_first: &str, server_first: &str, password: &str, nonce: &str) -> (String, String) {
        let bare = client_first.trim_start_matches("n,,");
        let fields: std::collections::HashMap<&str, &str> = server_first.split(',').filter_map(|f| f.split_once('=')).collect();
        let salt = B64.decode(fields["s"]).unwrap();
        let iterations: u32 = fields["i"].parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        (format!("{without_proof},p={}", B64.encode(proof)), format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user "user", password "pencil".
    #[test]
    fn the_rfc_7677_exchange_verifies() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = Verifier::from_password("pencil", &salt, 4096);
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.user, "user");
        let mut server = ServerFirst::new(first, verifier, b"");
        // The RFC's server nonce, appended as sent.
        server.message = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into();
        let final_message = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(server.finish(final_message).unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn a_postgres_verifier_parses_and_round_trips() {
        let verifier = Verifier::from_password("secret", b"0123456789abcdef", 4096);
        let text = verifier.to_text();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(Verifier::parse(&text), Some(verifier.clone()));
        assert!(verifier.matches_password("secret"));
        assert!(!verifier.matches_password("Secret"));
        assert_eq!(Verifier::parse("md5abc"), None);
        assert_eq!(Verifier::parse("SCRAM-SHA-256$0:AAAA$AA==:AA=="), None);
    }

    #[test]
    fn a_full_exchange_accepts_the_password_and_refuses_another() {
        let verifier = Verifier::from_password("right", b"salt-salt-salt!!", 4096);
        for (password, ok) in [("right", true), ("wrong", false)] {
            let first = client::first("ali,ce", "abcdef");
            let parsed = ClientFirst::parse(first.as_bytes()).unwrap();
            assert_eq!(parsed.user, "ali,ce");
            let server = ServerFirst::new(parsed, verifier.clone(), b"server-nonce");
            let (final_message, expected) = client::final_message(&first, &server.message, password);
            match server.finish(final_message.as_bytes()) {
                Ok(signature) => assert!(ok && signature == expected),
                Err(e) => assert!(!ok && e == ScramError::WrongProof, "{e}"),
            }
        }
    }

    #[test]
    fn a_replayed_or_foreign_nonce_is_refused() {
        let verifier = Verifier::from_password("pw", b"salt", 4096);
        let first = client::first("u", "abc");
        let server = ServerFirst::new(ClientFirst::parse(first.as_bytes()).unwrap(), verifier, b"xyz");
        let forged = "c=biws,r=abcOTHER,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(server.finish(forged.as_bytes()), Err(ScramError::NonceMismatch));
    }

    /// librdkafka < 2.6.1 repeats its nonce before the exchange's in the final message;
    /// its proof covers what it sent, so the exchange succeeds.
    #[test]
    fn old_librdkafkas_doubled_nonce_is_accepted() {
        let verifier = Verifier::from_password("pw", b"salt", 4096);
        let first = client::first("u", "cnonce");
        let server = ServerFirst::new(ClientFirst::parse(first.as_bytes()).unwrap(), verifier, b"xyz");
        let exchange_nonce = &server.message[2..server.message.find(',').unwrap()];
        let doubled = format!("cnonce{exchange_nonce}");
        let (final_message, expected) = client::final_message_with_nonce(&first, &server.message, "pw", &doubled);
        assert_eq!(server.finish(final_message.as_bytes()), Ok(expected));
        let (tripled, _) = client::final_message_with_nonce(&first, &server.message, "pw", &format!("cnonce{doubled}"));
        assert_eq!(server.finish(tripled.as_bytes()), Err(ScramError::NonceMismatch));
    }

    #[test]
    fn malformed_first_messages_are_refused() {
        for bad in ["", "n", "n,,", "n,,r=abc", "x,,n=u,r=a", "p=tls-unique,,n=u,r=a", "n,,n=a=b,r=x", "n,,n=,r=x", "n,,n=u,r="] {
            assert!(ClientFirst::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(ClientFirst::parse(&[0xff, 0xfe]).is_err());
        assert!(ClientFirst::parse(b"n,,n=u,r=abc,ext=1").is_ok(), "extensions are allowed");
    }

    #[test]
    fn md5_verifiers_check_user_and_password() {
        // md5("secret" || "alice")
        let hex: String = md5::Md5::digest(b"secretalice").iter().map(|b| format!("{b:02x}")).collect();
        let verifier = format!("md5{hex}");
        assert!(md5_matches(&verifier, "alice", "secret"));
        assert!(!md5_matches(&verifier, "bob", "secret"));
        assert!(!md5_matches("SCRAM-SHA-256$...", "alice", "secret"));
    }

    #[test]
    fn an_unknown_user_gets_a_stable_mock_verifier() {
        let secret = [7u8; 32];
        assert_eq!(Verifier::mock("nobody", &secret), Verifier::mock("nobody", &secret));
        assert_ne!(Verifier::mock("nobody", &secret).salt, Verifier::mock("other", &secret).salt);
    }
}
