//! age encryption (the age v1 format, the `age` crate): the public keys a backup is encrypted
//! to, the identities a restore decrypts with, and the two stream adapters. The backup host
//! holds only recipients (public keys), so it cannot read any backup, its own included. age
//! authenticates the payload in 64 KiB chunks and marks the last one, so a changed, cut or
//! extended object fails to decrypt instead of decrypting to something else.
//!
//! An identity is a secret: no message here quotes one, or any line of an identity file.

use crate::error::usage;
use anyhow::Result;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

/// Most recipients a backup is encrypted to: 64 stanzas of the largest kind (ssh-rsa 4096, ~720
/// bytes each) stay within [`MAX_HEADER`].
pub const MAX_RECIPIENTS: usize = 64;

/// One public key a backup is encrypted to.
#[derive(Clone)]
enum Recipient {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

/// Every public key a backup is encrypted to; never empty.
#[derive(Clone)]
pub struct Recipients(Vec<Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({})", self.0.len())
    }
}

impl Recipients {
    /// Parses recipients, each with where it came from (`--age-recipient`, `keys.txt:3`):
    /// `age1...` keys and SSH public keys (`ssh-ed25519 ...`, `ssh-rsa ...`) as age takes them.
    /// `None` when there are none.
    pub fn parse<'a>(entries: impl IntoIterator<Item = (String, &'a str)>) -> Result<Option<Self>> {
        let mut parsed = Vec::new();
        for (origin, text) in entries {
            parsed.push(parse_recipient(&origin, text.trim())?);
        }
        if parsed.len() > MAX_RECIPIENTS {
            return Err(usage!(
                "{} age recipients given, more than the {MAX_RECIPIENTS} a backup is encrypted to: the header would outgrow what restore reads; encrypt to fewer keys (a team can share one)",
                parsed.len()
            ));
        }
        Ok((!parsed.is_empty()).then_some(Self(parsed)))
    }

    /// The lines of an age recipients file: one recipient per line, `#` comments and blank lines
    /// skipped, as `age -R` reads it.
    pub fn file_entries(path: &str, text: &str) -> Vec<(String, String)> {
        text.lines()
            .enumerate()
            .map(|(nr, line)| (format!("{path}:{}", nr + 1), line.trim().to_string()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Wraps `out` so that what is written to it is stored encrypted to every recipient; the
    /// header is written at once. [`age::stream::StreamWriter::finish`] writes the last chunk:
    /// without it the object does not decrypt.
    pub fn encrypt<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let keys: Vec<&dyn age::Recipient> = self
            .0
            .iter()
            .map(|r| match r {
                Recipient::X25519(r) => r as &dyn age::Recipient,
                Recipient::Ssh(r) => r as &dyn age::Recipient,
            })
            .collect();
        age::Encryptor::with_recipients(keys.into_iter())
            .map_err(|e| io::Error::other(format!("age cannot encrypt to these recipients: {e}")))?
            .wrap_output(out)
    }
}

fn parse_recipient(origin: &str, text: &str) -> Result<Recipient> {
    let upper = text.to_ascii_uppercase();
    // Anywhere in the entry: `age1... AGE-SECRET-KEY-1...` must not be quoted either.
    if upper.contains("AGE-SECRET-KEY-") || upper.contains("PRIVATE KEY") {
        // Never quoted: it is a secret.
        return Err(usage!(
            "{origin} holds a private key, not a recipient: give the public key (`age-keygen -y KEY_FILE` prints it), and keep the private key off the backup host"
        ));
    }
    if text.starts_with("age1") {
        let key = text.parse().map(Recipient::X25519).map_err(|e| {
            usage!("{origin}: `{text}` is not a valid age public key ({e}): copy it again from `age-keygen -y KEY_FILE`")
        })?;
        return refuse_low_order(origin, text, x25519_point(text)).map(|()| key);
    }
    if text.starts_with("ssh-") {
        if let Ok(key) = text.parse().map(Recipient::Ssh) {
            return refuse_low_order(origin, text, ssh_ed25519_point(text)).map(|()| key);
        }
        return text.parse().map(Recipient::Ssh).map_err(|e| {
            let why = match e {
                age::ssh::ParseRecipientKeyError::Unsupported(kind) => {
                    format!("age does not encrypt to `{kind}` keys")
                }
                age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                    "the RSA key is shorter than 2048 bits".into()
                }
                age::ssh::ParseRecipientKeyError::RsaModulusTooLarge => {
                    "the RSA key is longer than age supports".into()
                }
                _ => "it is not a valid SSH public key".into(),
            };
            usage!("{origin}: `{text}` is not an age recipient: {why}: use an ssh-ed25519 or ssh-rsa public key, or an age1... key from age-keygen")
        });
    }
    // Not quoted: a value that is not a public key may be something secret.
    Err(usage!(
        "{origin} is not an age recipient (it does not start with `age1` or `ssh-`): give an age public key from `age-keygen -y KEY_FILE`, or an ssh-ed25519 or ssh-rsa public key"
    ))
}

/// A public key of small order (the all-zero key, an ed25519 torsion point) makes the X25519
/// shared secret all zeros whatever the ephemeral key: the age crate panics on an x25519 one
/// (after the backup started), and wraps the file key for an ssh-ed25519 one under a key anyone
/// can compute. The `age` CLI refuses both ("low order point"); so does this. An ed25519 key
/// that is no curve point at all is refused too: age would fail on it mid-backup.
fn refuse_low_order(origin: &str, text: &str, point: Option<Option<[u8; 32]>>) -> Result<()> {
    let u = match point {
        None => return Ok(()),
        Some(Some(u)) => u,
        Some(None) => {
            return Err(usage!(
                "{origin}: `{text}` is not an ed25519 public key (its point is not on the curve): copy it again from the .pub file"
            ))
        }
    };
    // A clamped scalar is a multiple of the cofactor 8: the product is the identity (u = 0)
    // exactly when the point has small order.
    let product = curve25519_dalek::montgomery::MontgomeryPoint(u).mul_clamped([0x5a; 32]);
    if product.0 == [0u8; 32] {
        return Err(usage!(
            "{origin}: `{text}` is a low-order key: encrypting to it would let anyone decrypt the backup: give a real public key from `age-keygen -y KEY_FILE` or ssh-keygen"
        ));
    }
    Ok(())
}

/// The Montgomery u-coordinate of an `age1...` recipient (age's parser checked the encoding).
fn x25519_point(text: &str) -> Option<Option<[u8; 32]>> {
    use bech32::FromBase32;
    let (_, data, _) = bech32::decode(text).ok()?;
    Some(Vec::<u8>::from_base32(&data).ok()?.try_into().ok())
}

/// The Montgomery u-coordinate of an `ssh-ed25519 BASE64 ...` recipient's key; `None` for
/// other kinds, `Some(None)` for a key that is not a curve point.
fn ssh_ed25519_point(text: &str) -> Option<Option<[u8; 32]>> {
    use base64::Engine;
    let mut parts = text.split_whitespace();
    if parts.next()? != "ssh-ed25519" {
        return None;
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()?;
    // string "ssh-ed25519", string key (32 bytes): the key is the blob's last 32 bytes.
    let key: [u8; 32] = blob.get(blob.len().checked_sub(32)?..)?.try_into().ok()?;
    let point = curve25519_dalek::edwards::CompressedEdwardsY(key).decompress();
    Some(point.map(|p| p.to_montgomery().0))
}

/// One private key a restore decrypts with.
enum Identity {
    X25519(age::x25519::Identity),
    Ssh(age::ssh::Identity),
}

/// The private keys a restore or verify decrypts with; never empty.
pub struct Identities(Vec<Identity>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({})", self.0.len())
    }
}

impl Identities {
    /// Parses an age identity file (`AGE-SECRET-KEY-1...` lines, `#` comments) or an
    /// unencrypted OpenSSH private key. `origin` names where it came from, never what it holds.
    pub fn parse(origin: &str, text: &str) -> Result<Self> {
        if text.contains("-----BEGIN") {
            return Self::parse_ssh(origin, text);
        }
        let mut keys = Vec::new();
        for (nr, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse() {
                Ok(key) => keys.push(Identity::X25519(key)),
                Err(_) => {
                    return Err(usage!(
                        "{origin}: line {} is not an age identity (AGE-SECRET-KEY-1...): give the key file age-keygen wrote, or an unencrypted OpenSSH private key",
                        nr + 1
                    ))
                }
            }
        }
        if keys.is_empty() {
            return Err(usage!(
                "{origin} holds no age identity: give the key file age-keygen wrote (AGE-SECRET-KEY-1...)"
            ));
        }
        Ok(Self(keys))
    }

    fn parse_ssh(origin: &str, text: &str) -> Result<Self> {
        let key = age::ssh::Identity::from_buffer(io::Cursor::new(text.as_bytes()), None)
            .map_err(|_| {
                usage!("{origin} is not an OpenSSH private key age can read: give an age identity file, or an unencrypted ssh-ed25519 or ssh-rsa key")
            })?;
        match &key {
            age::ssh::Identity::Unencrypted(_) => Ok(Self(vec![Identity::Ssh(key)])),
            age::ssh::Identity::Encrypted(_) => Err(usage!(
                "{origin} is a passphrase-protected SSH key, and restores run without a prompt: give an age identity file, or a copy of the key without a passphrase (`ssh-keygen -p`)"
            )),
            age::ssh::Identity::Unsupported(_) => Err(usage!(
                "{origin} is an SSH key of a kind age does not decrypt with: use an ssh-ed25519 or ssh-rsa key, or an age identity file"
            )),
        }
    }

    /// Reads the age header from `stored` and opens the payload with these identities. Fails,
    /// before any plaintext is read, when the header is damaged, larger than [`MAX_HEADER`], or
    /// names none of them.
    pub async fn decrypt<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        stored: R,
        key: &str,
    ) -> Result<Decrypted> {
        let mut stored = tokio::io::BufReader::new(stored);
        let header = read_header(&mut stored)
            .await
            .map_err(|e| header_error(key, e))?;
        let rest: Pin<Box<dyn AsyncRead + Send>> = Box::pin(tokio::io::AsyncReadExt::chain(
            io::Cursor::new(header),
            stored,
        ));
        let header =
            age::Decryptor::new_async_buffered(futures_util::io::BufReader::new(rest.compat()))
                .await
                .map_err(|e| header_error(key, e))?;
        let keys: Vec<&dyn age::Identity> = self
            .0
            .iter()
            .map(|i| match i {
                Identity::X25519(i) => i as &dyn age::Identity,
                Identity::Ssh(i) => i as &dyn age::Identity,
            })
            .collect();
        let reader = header
            .decrypt_async(keys.into_iter())
            .map_err(|e| header_error(key, e))?;
        Ok(Decrypted(reader.compat()))
    }
}

/// The largest age header read: ours name a few recipients in well under 4 KiB (an X25519
/// stanza is ~120 bytes, an ssh-rsa one ~500). age's own reader would buffer a header of any
/// size, re-parsing it at every line, so a planted object could hold a restore for hours.
pub const MAX_HEADER: usize = 64 * 1024;

/// The header's lines, up to and including the MAC line (`--- ...`), at most [`MAX_HEADER`].
async fn read_header<R: tokio::io::AsyncBufRead + Unpin>(
    stored: &mut R,
) -> Result<Vec<u8>, age::DecryptError> {
    use tokio::io::AsyncBufReadExt;
    let invalid =
        |what: String| age::DecryptError::Io(io::Error::new(io::ErrorKind::InvalidData, what));
    let mut header = Vec::new();
    loop {
        let start = header.len();
        let room = (MAX_HEADER + 1 - start) as u64;
        let n = tokio::io::AsyncReadExt::take(&mut *stored, room)
            .read_until(b'\n', &mut header)
            .await
            .map_err(age::DecryptError::Io)?;
        if header.len() > MAX_HEADER {
            return Err(invalid(format!(
                "its header is longer than {} KiB, more than any backup of this tool has",
                MAX_HEADER / 1024
            )));
        }
        if n == 0 || !header.ends_with(b"\n") {
            return Err(invalid("its header ends before its MAC line".into()));
        }
        if start == 0 && !header.starts_with(b"age-encryption.org/") {
            return Err(age::DecryptError::InvalidHeader);
        }
        if header[start..].starts_with(b"--- ") {
            return Ok(header);
        }
    }
}

fn header_error(key: &str, e: age::DecryptError) -> anyhow::Error {
    match e {
        age::DecryptError::NoMatchingKeys => anyhow::anyhow!(
            "{key} is encrypted to other age keys: none of the given identities can decrypt it: pass the identity of one of its recipients with --age-identity or AGE_IDENTITY"
        ),
        age::DecryptError::Io(e) if e.kind() == io::ErrorKind::TimedOut => anyhow::anyhow!(
            "S3 stopped sending {key}: {e}: check the network, or raise --request-timeout"
        ),
        other => anyhow::anyhow!(
            "{key} is not an age file this tool can decrypt ({other}): it is damaged or not a backup as this tool writes it; restore another (see `pg-s3-backup list`)"
        ),
    }
}

/// A failure inside the encrypted payload, told apart from the decompressor's own by
/// [`is_damage`].
#[derive(Debug, thiserror::Error)]
#[error(
    "its age encryption does not authenticate ({0}): the object was changed, cut short or extended"
)]
pub struct Damaged(String);

/// Whether `err`, as a decompressor passes it on, is a payload chunk that failed to decrypt.
pub fn is_damage(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Damaged>())
}

type Payload = Compat<
    age::stream::StreamReader<futures_util::io::BufReader<Compat<Pin<Box<dyn AsyncRead + Send>>>>>,
>;

/// The decrypted payload; every read fails on a chunk that does not authenticate, and the end
/// comes only after the last chunk authenticated as the last.
pub struct Decrypted(Payload);

impl AsyncRead for Decrypted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Poll::Ready(Err(e)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(io::Error::other(Damaged(e.to_string())))),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn keypair() -> (String, String) {
        let identity = age::x25519::Identity::generate();
        let public = identity.to_public().to_string();
        use age::secrecy::ExposeSecret;
        (identity.to_string().expose_secret().to_string(), public)
    }

    fn encrypt(recipients: &Recipients, plain: &[u8]) -> Vec<u8> {
        let mut w = recipients.encrypt(Vec::new()).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap()
    }

    async fn decrypt(identities: &Identities, stored: Vec<u8>) -> Result<Vec<u8>> {
        let mut r = identities
            .decrypt(std::io::Cursor::new(stored), "k")
            .await?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn any_recipient_decrypts_and_nothing_else_does() {
        let (secret_a, public_a) = keypair();
        let (secret_b, public_b) = keypair();
        let (secret_c, _) = keypair();
        let both = Recipients::parse([
            ("--age-recipient".to_string(), public_a.as_str()),
            ("--age-recipient".to_string(), public_b.as_str()),
        ])
        .unwrap()
        .unwrap();
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let stored = encrypt(&both, &plain);
        for secret in [&secret_a, &secret_b] {
            let ids = Identities::parse("AGE_IDENTITY", secret).unwrap();
            assert_eq!(decrypt(&ids, stored.clone()).await.unwrap(), plain);
        }
        let other = Identities::parse("AGE_IDENTITY", &secret_c).unwrap();
        let err = decrypt(&other, stored.clone())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("other age keys"), "{err}");
    }

    #[tokio::test]
    async fn a_changed_cut_or_extended_payload_never_reads_to_its_end() {
        let (secret, public) = keypair();
        let r = Recipients::parse([("x".to_string(), public.as_str())])
            .unwrap()
            .unwrap();
        let ids = Identities::parse("x", &secret).unwrap();
        let plain = vec![7u8; 200_000];
        let stored = encrypt(&r, &plain);
        let mut flipped = stored.clone();
        let at = flipped.len() - 1000;
        flipped[at] ^= 1;
        let cut = stored[..stored.len() - 10].to_vec();
        let at_chunk = stored.len() - (200_000 % 65536) - 16;
        let at_boundary = stored[..at_chunk].to_vec();
        let mut extended = stored.clone();
        extended.extend_from_slice(b"more");
        for bad in [flipped, cut, at_boundary, extended] {
            let err = decrypt(&ids, bad).await.unwrap_err();
            let io = err.downcast_ref::<io::Error>().expect("an I/O error");
            assert!(is_damage(io), "{err}");
        }
    }

    /// Small-order keys make the shared secret all zeros: refused at parse time, as the age
    /// CLI refuses them.
    #[test]
    fn low_order_recipients_are_refused() {
        for bad in [
            // u = 0 and u = 1.
            "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z",
            "age1qyqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqj7vrya",
            // The ed25519 identity point, and the all-zero placeholder (order 4).
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let err = Recipients::parse([("r".to_string(), bad)]).unwrap_err();
            assert!(err.to_string().contains("low-order"), "{bad}: {err}");
            assert_eq!(crate::error::exit_code(&err), 2);
        }
        let (_, public) = keypair();
        assert!(Recipients::parse([("r".to_string(), public.as_str())]).is_ok());
    }

    #[test]
    fn a_secret_key_anywhere_in_a_recipient_is_not_quoted() {
        let (secret, public) = keypair();
        for bad in [
            format!("{public} {secret}"),
            format!("ssh-ed25519 {secret}"),
        ] {
            let msg = Recipients::parse([("r".to_string(), bad.as_str())])
                .unwrap_err()
                .to_string();
            assert!(!msg.contains(&secret[15..]), "{msg}");
        }
    }

    /// A planted header that never ends, or ends past the limit, is refused without reading on.
    #[tokio::test]
    async fn a_huge_age_header_is_refused_at_the_limit() {
        let (secret, public) = keypair();
        let ids = Identities::parse("x", &secret).unwrap();
        let r = Recipients::parse([("x".to_string(), public.as_str())])
            .unwrap()
            .unwrap();
        let good = encrypt(&r, b"data");
        let line = format!("-> X25519 {}\n", "A".repeat(60));
        let mut huge = b"age-encryption.org/v1\n".to_vec();
        while huge.len() <= MAX_HEADER {
            huge.extend_from_slice(line.as_bytes());
        }
        let mut past = huge.clone();
        past.extend_from_slice(&good[good.iter().position(|&b| b == b'\n').unwrap() + 1..]);
        let endless = [
            b"age-encryption.org/v1\n-> X25519 ".to_vec(),
            vec![b'A'; 50 << 20],
        ]
        .concat();
        let stanza = format!("-> X25519 {a}\n{a}\n", a = "A".repeat(43));
        let many = format!(
            "age-encryption.org/v1\n{}--- {}\n",
            stanza.repeat(20_000),
            "A".repeat(43)
        );
        for bad in [past, endless, many.into_bytes()] {
            let err = decrypt(&ids, bad).await.unwrap_err().to_string();
            assert!(err.contains("header is longer than 64 KiB"), "{err}");
        }
        let err = decrypt(&ids, b"not age\n--- x\n".to_vec())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an age file"), "{err}");
        assert_eq!(decrypt(&ids, good).await.unwrap(), b"data");
    }

    #[test]
    fn recipients_take_age_and_ssh_keys_and_never_quote_a_secret() {
        let (secret, public) = keypair();
        let mut blob = Vec::new();
        for part in [&b"ssh-ed25519"[..], &[9u8; 32][..]] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        use base64::Engine;
        let ssh = format!(
            "ssh-ed25519 {} alice@example",
            base64::engine::general_purpose::STANDARD.encode(blob)
        );
        let ssh = ssh.as_str();
        let r = Recipients::parse([("a".to_string(), public.as_str()), ("b".to_string(), ssh)])
            .unwrap()
            .unwrap();
        assert_eq!(r.len(), 2);
        assert!(Recipients::parse(std::iter::empty()).unwrap().is_none());
        for (bad, wants) in [
            (secret.as_str(), "private key"),
            ("age1qqqq", "not a valid age public key"),
            ("ssh-dss AAAAB3NzaC1kc3M", "not an age recipient"),
            ("hunter2", "does not start with"),
        ] {
            let err = Recipients::parse([("AGE_RECIPIENTS entry 1".to_string(), bad)]).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(wants) && msg.contains("AGE_RECIPIENTS entry 1"),
                "{msg}"
            );
            assert!(crate::error::exit_code(&err) == 2, "{msg}");
            if bad == secret || bad == "hunter2" {
                assert!(!msg.contains(bad), "{msg}");
            }
        }
    }

    #[tokio::test]
    async fn the_most_recipients_allowed_still_decrypt_and_one_more_is_refused() {
        let keys: Vec<(String, String)> = (0..=MAX_RECIPIENTS).map(|_| keypair()).collect();
        let entries = |n: usize| {
            keys[..n]
                .iter()
                .map(|(_, public)| ("f".to_string(), public.as_str()))
                .collect::<Vec<_>>()
        };
        let err = Recipients::parse(entries(MAX_RECIPIENTS + 1)).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2, "{err}");
        let all = Recipients::parse(entries(MAX_RECIPIENTS)).unwrap().unwrap();
        let stored = encrypt(&all, b"data");
        let last = Identities::parse("x", &keys[MAX_RECIPIENTS - 1].0).unwrap();
        assert_eq!(decrypt(&last, stored).await.unwrap(), b"data");
    }

    #[test]
    fn recipients_files_skip_comments_and_blank_lines() {
        let entries =
            Recipients::file_entries("keys.txt", "# ops\n\nage1abc\n  ssh-ed25519 x y \n");
        assert_eq!(
            entries,
            [
                ("keys.txt:3".to_string(), "age1abc".to_string()),
                ("keys.txt:4".to_string(), "ssh-ed25519 x y".to_string())
            ]
        );
    }

    #[test]
    fn identities_are_never_quoted() {
        let (secret, _) = keypair();
        let tampered = secret.replace('Q', "R").replace('P', "Q") + "x";
        let text = format!("# created by age-keygen\n{tampered}\n");
        let msg = Identities::parse("AGE_IDENTITY", &text)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 2") && !msg.contains(&tampered[10..]),
            "{msg}"
        );
        let msg = Identities::parse("AGE_IDENTITY", "# nothing\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no age identity"), "{msg}");
        let msg = Identities::parse(
            "f",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("OpenSSH private key") && !msg.contains("AAAA"),
            "{msg}"
        );
    }
}
