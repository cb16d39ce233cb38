//! The key claim: which key a backup writes, and the lock object `{key}.lock` that holds it
//! while the backup runs (written only if absent, rewritten as a heartbeat, deleted at the end
//! where the role may delete; a write-only role leaves it, and prune removes it once spent).
//! It never writes the backup itself; `ops::backup` does.

use crate::config::{ObjectOptions, S3Config};
use crate::layout::BackupId;
use crate::{clock, output, s3};
use anyhow::Result;
use chrono::Utc;

/// Keys tried when earlier backups took the same second.
const MAX_SAME_SECOND: u32 = 100;
/// How long a won lock settles before it is read back. A store whose conditional write is not
/// atomic (moto and s3s-fs here, seen in CI; AWS's is) lets a second writer that checked before
/// ours landed overwrite it a few milliseconds later: the lock then names the other run. Every
/// backup waits this long once, so it is kept short: 2% of the benchmark's 4.4 s backup.
const LOCK_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// The key this run writes, and the lock object that claims it while the backup runs.
pub struct Claim {
    pub key: String,
    pub lock: Option<String>,
    /// Written into the lock: which run holds it.
    pub run: String,
}

/// Picks the key for this backup: the timestamped key, or `-2`, `-3`... when it is taken, so an
/// existing backup is never overwritten. A key is taken when its object exists (HeadObject) or
/// another run holds its lock: the lock object `{key}.lock` is written only if absent
/// (`If-None-Match: *`), so of two backups started in the same second exactly one gets each
/// key, as Terraform's S3 lock files do. Without permission to read (the write-only backup
/// role) HeadObject answers 403, which counts as free: the lock, and the final write's own
/// `If-None-Match`, still keep one backup from overwriting another.
pub async fn claim_key(
    client: &aws_sdk_s3::Client,
    s3cfg: &S3Config,
    object: &ObjectOptions,
    mut id: BackupId,
) -> Result<Claim> {
    let (bucket, prefix) = (&s3cfg.bucket, &s3cfg.prefix);
    let run = crate::upload::run_token();
    for attempt in 0..MAX_SAME_SECOND {
        let key = id.key(prefix);
        let taken = exists(client, bucket, &key).await;
        if attempt == 0 {
            // The first answer carries the store's clock: a key named by a clock the store
            // disagrees with would be from the future (or the past), so nothing is written.
            clock::Now::read()
                .check_skew()
                .map_err(|skew| anyhow::anyhow!("{skew}; nothing was written"))?;
        }
        if taken? {
            id = id.next_seq();
            continue;
        }
        let lock = BackupId::lock_key(&key);
        let claim = Claim {
            key: key.clone(),
            lock: Some(lock.clone()),
            run: run.clone(),
        };
        match put_lock(client, bucket, &lock, &claim, object, "started", true).await {
            // The run that held the lock may have completed the object and released the lock
            // between the HeadObject and this write: look again, or the final write would fail.
            Ok(_) => {
                if held_by_another(client, bucket, &claim).await {
                    // Theirs now: not ours to delete.
                    id = id.next_seq();
                    continue;
                }
                match exists(client, bucket, &key).await {
                    Ok(false) => return Ok(claim),
                    Ok(true) => id = id.next_seq(),
                    Err(e) => {
                        release(client, bucket, &claim).await;
                        return Err(e.context("the backup did not start"));
                    }
                }
                release(client, bucket, &claim).await;
            }
            Err(e) if s3::lost_condition(&e) => id = id.next_seq(),
            Err(e) => {
                let err = s3::describe("PutObject (lock)", &format!("s3://{bucket}/{lock}"), &e);
                // The lock is a safeguard, not the backup: without it only a backup started in
                // this same second could collide, and HeadObject already checked the key.
                if s3::is_denied(&e) || s3::is_not_implemented(&e) {
                    output::warn(format_args!("{err}; backing up without a lock, so a backup started in this same second could take the same key"));
                    return Ok(Claim {
                        key,
                        lock: None,
                        run,
                    });
                }
                return Err(err);
            }
        }
    }
    anyhow::bail!(
        "more than {MAX_SAME_SECOND} backups of {} in one second: wait a second and retry",
        id.series.shown()
    )
}

/// Whether the lock just won names another run once it settled (see [`LOCK_SETTLE`]). Unknown
/// (no s3:GetObject, a lock gone, an unreadable body) counts as ours: the conditional final
/// write still keeps one backup from overwriting another.
async fn held_by_another(client: &aws_sdk_s3::Client, bucket: &str, claim: &Claim) -> bool {
    let Some(lock) = &claim.lock else {
        return false;
    };
    tokio::time::sleep(LOCK_SETTLE).await;
    let Ok(got) = client.get_object().bucket(bucket).key(lock).send().await else {
        return false;
    };
    let Ok(body) = got.body.collect().await else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&body.into_bytes())
        .ok()
        .and_then(|v| {
            v.get("run")
                .and_then(|r| r.as_str())
                .map(|r| r != claim.run)
        })
        .unwrap_or(false)
}

/// Whether `key`'s object exists. AWS answers 403, not 404, for a missing key to a caller
/// without s3:ListBucket (the backup policy grants none): the key's state is unknown then, and
/// the lock and the conditional final write still keep a backup from overwriting another.
async fn exists(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<bool> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
        Err(e) if s3::is_denied(&e) => Ok(false),
        Err(e) => Err(s3::describe(
            "HeadObject",
            &format!("s3://{bucket}/{key}"),
            &e,
        )),
    }
}

/// Writes the lock object of `key`: which key, `stamp` (`started`, or `alive` for a heartbeat)
/// with the time, and the tool. The claim writes it only if absent; the heartbeat over its own.
async fn put_lock(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    lock: &str,
    claim: &Claim,
    object: &ObjectOptions,
    stamp: &str,
    only_if_absent: bool,
) -> std::result::Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>,
> {
    let body = serde_json::json!({
        "key": claim.key,
        "run": claim.run,
        stamp: Utc::now().to_rfc3339(),
        "tool": format!("pg-s3-backup {}", env!("CARGO_PKG_VERSION")),
    });
    client
        .put_object()
        .bucket(bucket)
        .key(lock)
        .set_if_none_match(only_if_absent.then(|| "*".to_string()))
        .content_type("application/json")
        // Bucket policies that require encryption apply to the lock too.
        .set_server_side_encryption(object.sse.clone())
        .set_ssekms_key_id(object.sse_kms_key_id.clone())
        .body(body.to_string().into_bytes().into())
        .send()
        .await
}

/// Rewrites the lock every `layout::heartbeat()` while the backup runs (unconditionally: the
/// key is this run's), so that cleanup by another run never takes it for a killed one. A
/// failed rewrite only warns once: the backup goes on.
pub fn heartbeat(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    object: &ObjectOptions,
    claim: &Claim,
) -> Option<tokio::task::JoinHandle<()>> {
    let lock = claim.lock.clone()?;
    let (client, bucket, object) = (client.clone(), bucket.to_string(), object.clone());
    let claim = Claim {
        key: claim.key.clone(),
        lock: claim.lock.clone(),
        run: claim.run.clone(),
    };
    Some(tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::time::sleep(crate::layout::heartbeat()).await;
            let put = put_lock(&client, &bucket, &lock, &claim, &object, "alive", false).await;
            if let Err(e) = put {
                if !warned {
                    let err = s3::describe(
                        "PutObject (lock heartbeat)",
                        &format!("s3://{bucket}/{lock}"),
                        &e,
                    );
                    output::warn(format_args!("{err}; a cleanup by another run may take this backup for a killed one after --abort-incomplete-after"));
                    warned = true;
                }
            }
        }
    }))
}

/// Deletes the lock once the object is complete or the upload aborted. The backup role needs
/// no s3:DeleteObject: a lock it may not delete stays, reserving only a key from the past,
/// until prune removes it (spent once its backup is listed, stale after
/// `--abort-incomplete-after` otherwise). Any other failure warns; the backup stands.
pub async fn release(client: &aws_sdk_s3::Client, bucket: &str, claim: &Claim) {
    let Some(lock) = &claim.lock else { return };
    match client.delete_object().bucket(bucket).key(lock).send().await {
        Ok(_) => {}
        Err(e) if s3::is_denied(&e) => {}
        Err(e) => {
            let err = s3::describe("DeleteObject (lock)", &format!("s3://{bucket}/{lock}"), &e);
            output::warn(format_args!(
                "{err}; the lock only reserved this backup's key, and prune removes it"
            ));
        }
    }
}
