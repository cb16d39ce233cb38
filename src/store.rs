//! Backup-level S3 operations shared by `list`, `prune` and `backup`: list this tool's backups
//! under a prefix (every other object is invisible here), delete in batches, and abort stale
//! multipart uploads. Keys are parsed only by `layout`; policy decisions live in `retention`.

use crate::layout::{BackupId, Companion, Series};
use crate::s3::describe;
use anyhow::Result;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};

/// DeleteObjects takes at most 1,000 keys per request.
const DELETE_BATCH: usize = 1000;

/// The credentials may not perform `action`: backup warns and goes on, prune fails.
#[derive(Debug, thiserror::Error)]
#[error("{action} is denied on {resource}: grant it to the backup's credentials (see `pg-s3-backup policy`)")]
pub struct Denied {
    pub action: &'static str,
    pub resource: String,
}

use crate::s3::{is_denied, is_not_implemented};

/// One backup object as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: BackupId,
    pub key: String,
    pub size: u64,
    /// When the store says the object was written, if it says.
    pub stored: Option<DateTime<Utc>>,
    /// Its integrity record (`{key}.json`) is listed beside it: the backup completed and said
    /// what its bytes are. Without one it is unverified.
    pub recorded: bool,
    /// Its record and lock objects, as listed: deleted with it.
    pub companions: Vec<String>,
}

/// This tool's backups under `prefix` (of one series, or all), newest first. Objects whose
/// keys do not parse under the layout (other tools' files, folder markers, other prefixes) are
/// skipped. Follows ListObjectsV2 pagination.
pub async fn list_backups(
    client: &Client,
    bucket: &str,
    prefix: &str,
    series: Option<&Series>,
) -> Result<Vec<Listed>> {
    let list_prefix = match series {
        Some(s) => s.prefix(prefix),
        None => prefix.to_string(),
    };
    let objects = list_objects(client, bucket, &list_prefix).await?;
    let mut found = Vec::new();
    for (key, size, stored) in &objects {
        let Some(id) = BackupId::parse(prefix, key) else {
            continue;
        };
        if series.is_some_and(|s| *s != id.series) {
            continue;
        }
        found.push(Listed {
            id,
            key: key.clone(),
            size: *size,
            stored: *stored,
            recorded: false,
            companions: Vec::new(),
        });
    }
    let at: std::collections::HashMap<String, usize> = found
        .iter()
        .enumerate()
        .map(|(i, l)| (l.key.clone(), i))
        .collect();
    for (key, _, _) in &objects {
        let Some((backup, companion)) = BackupId::companion_of(prefix, key) else {
            continue;
        };
        if let Some(&i) = at.get(backup) {
            found[i].recorded |= companion == Companion::Record;
            found[i].companions.push(key.clone());
        }
    }
    found.sort_by(|a, b| (b.id.time, b.id.seq, &b.key).cmp(&(a.id.time, a.id.seq, &a.key)));
    Ok(found)
}

/// Splits backups (newest first) into those up to now and those from the future (see
/// `clock`): dated later than now plus the tolerance, or later than the store says the object
/// was written (a backup's key is named when it starts, and stored when it ends). A future key
/// is never "the newest backup".
pub fn split_future(listed: Vec<Listed>, now: &crate::clock::Now) -> (Vec<Listed>, Vec<Listed>) {
    listed.into_iter().partition(|l| !is_future(l, now))
}

/// The one definition of a key from the future (see [`split_future`]).
pub fn is_future(l: &Listed, now: &crate::clock::Now) -> bool {
    let after_stored = l
        .stored
        .is_some_and(|stored| l.id.time > stored + crate::clock::TOLERANCE);
    now.is_future(l.id.time) || after_stored
}

/// Every object under `list_prefix`: key and size, following ListObjectsV2 pagination. A
/// denial is a [`Denied`] naming s3:ListBucket.
async fn list_objects(
    client: &Client,
    bucket: &str,
    list_prefix: &str,
) -> Result<Vec<(String, u64, Option<DateTime<Utc>>)>> {
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(list_prefix)
        .into_paginator()
        .send();
    let mut objects = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            if is_denied(&e) {
                anyhow::Error::new(Denied {
                    action: "s3:ListBucket",
                    resource: format!("s3://{bucket}/{list_prefix}"),
                })
            } else {
                describe("ListObjectsV2", &format!("s3://{bucket}/{list_prefix}"), &e)
            }
        })?;
        for object in page.contents() {
            if let Some(key) = object.key() {
                let stored = object
                    .last_modified()
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0));
                objects.push((
                    key.to_string(),
                    object.size().unwrap_or(0).max(0) as u64,
                    stored,
                ));
            }
        }
    }
    Ok(objects)
}

/// What a deletion did, key by key.
#[derive(Debug, Default)]
pub struct Deleted {
    pub deleted: Vec<String>,
    /// Keys the store refused, with its reason.
    pub failed: Vec<(String, String)>,
    /// A signal stopped the deletion between requests: the keys after `deleted` and `failed`
    /// were not sent.
    pub stopped: bool,
}

/// Deletes keys with DeleteObjects in batches of 1,000, reading the per-key errors a 200
/// response can carry; falls back to DeleteObject on stores without DeleteObjects.
pub async fn delete(client: &Client, bucket: &str, keys: &[String]) -> Result<Deleted> {
    let mut out = Deleted::default();
    // What `main` reports if its grace runs out while a request is in flight.
    let pending = crate::signals::pending(String::new(), Vec::new());
    for batch in keys.chunks(DELETE_BATCH) {
        if crate::signals::stop_requested().is_some() {
            out.stopped = true;
            break;
        }
        pending.update(in_flight(&out, batch, keys.len()));
        let objects: Vec<ObjectIdentifier> = batch
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<_, _>>()?;
        let request = Delete::builder()
            .set_objects(Some(objects))
            .quiet(false)
            .build()?;
        match client
            .delete_objects()
            .bucket(bucket)
            .delete(request)
            .send()
            .await
        {
            Ok(resp) => {
                out.deleted.extend(
                    resp.deleted()
                        .iter()
                        .filter_map(|d| d.key().map(String::from)),
                );
                for e in resp.errors() {
                    let key = e.key().unwrap_or_default().to_string();
                    out.failed.push((
                        key,
                        format!(
                            "{}: {}",
                            e.code().unwrap_or("error"),
                            e.message().unwrap_or("")
                        ),
                    ));
                }
            }
            Err(e) if is_not_implemented(&e) => {
                delete_one_by_one(client, bucket, batch, keys.len(), &mut out, &pending).await?
            }
            Err(e) if is_denied(&e) => {
                return Err(Denied {
                    action: "s3:DeleteObject",
                    resource: format!("s3://{bucket}/{}", batch[0]),
                }
                .into())
            }
            Err(e) => return Err(describe("DeleteObjects", &format!("s3://{bucket}"), &e)),
        }
    }
    if !out.failed.is_empty()
        && out.deleted.is_empty()
        && out
            .failed
            .iter()
            .all(|(_, why)| why.starts_with("AccessDenied"))
    {
        return Err(Denied {
            action: "s3:DeleteObject",
            resource: format!("s3://{bucket}/{}", out.failed[0].0),
        }
        .into());
    }
    Ok(out)
}

/// The report for a stop whose grace ran out with `batch` in flight: the keys deleted so far on
/// stdout, as prune prints them, and the ones that may or may not have been.
fn in_flight(out: &Deleted, batch: &[String], planned: usize) -> crate::signals::Pending {
    let mut stdout: Vec<String> = out
        .deleted
        .iter()
        .map(|k| format!("  deleted {k}"))
        .collect();
    stdout.extend(batch.iter().map(|k| format!("  maybe deleted {k}")));
    crate::signals::Pending {
        message: format!(
            "stopped while deleting: {} of {planned} backups deleted, and a request to delete {} more was sent and not answered (they may or may not be deleted; stdout lists both); run prune again to finish",
            out.deleted.len(),
            batch.len()
        ),
        stdout,
    }
}

async fn delete_one_by_one(
    client: &Client,
    bucket: &str,
    keys: &[String],
    planned: usize,
    out: &mut Deleted,
    pending: &crate::signals::PendingGuard,
) -> Result<()> {
    for key in keys {
        if crate::signals::stop_requested().is_some() {
            out.stopped = true;
            break;
        }
        pending.update(in_flight(out, std::slice::from_ref(key), planned));
        match client.delete_object().bucket(bucket).key(key).send().await {
            Ok(_) => out.deleted.push(key.clone()),
            Err(e) if is_denied(&e) => {
                return Err(Denied {
                    action: "s3:DeleteObject",
                    resource: format!("s3://{bucket}/{key}"),
                }
                .into())
            }
            Err(e) => out
                .failed
                .push((key.clone(), describe("DeleteObject", key, &e).to_string())),
        }
    }
    Ok(())
}

/// What killed runs and spent claims left under `prefix`: lock and record objects of this
/// tool's keys, split by `before`.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Locks whose backup is complete (listed): the claim is spent, whatever its age. A backup
    /// role without s3:DeleteObject leaves its lock for prune to remove.
    pub spent: Vec<String>,
    /// Locks of backups that started before `before`, last written before it too, and that
    /// never completed: left by a run that was killed.
    pub stale: Vec<String>,
    /// Records whose backup is not listed, from before `before`: the backup was deleted by
    /// other means, or the record was planted. A record is written only after its backup is
    /// complete, so a young one may be a backup's the listing passed just before it completed.
    pub orphans: Vec<String>,
    /// The backup keys whose lock was written at or after `before`: a run that is alive (a
    /// running backup rewrites its lock every `layout::HEARTBEAT`).
    pub alive: std::collections::HashSet<String>,
}

pub async fn leftovers(
    client: &Client,
    bucket: &str,
    prefix: &str,
    before: DateTime<Utc>,
) -> Result<Leftovers> {
    let objects = list_objects(client, bucket, prefix).await?;
    Ok(Leftovers::of(prefix, &objects, before))
}

impl Leftovers {
    /// Sorts the lock and record objects of one listing of `prefix`.
    fn of(
        prefix: &str,
        objects: &[(String, u64, Option<DateTime<Utc>>)],
        before: DateTime<Utc>,
    ) -> Self {
        let backups: std::collections::HashSet<&str> = objects
            .iter()
            .filter(|(key, _, _)| BackupId::parse(prefix, key).is_some())
            .map(|(key, _, _)| key.as_str())
            .collect();
        let mut out = Self::default();
        for (key, _, stored) in objects {
            let Some((backup, companion)) = BackupId::companion_of(prefix, key) else {
                continue;
            };
            let Some(id) = BackupId::parse(prefix, backup) else {
                continue;
            };
            // A store that gives no LastModified leaves the key's own time.
            let old = id.time < before && stored.is_none_or(|t| t < before);
            let complete = backups.contains(backup);
            match companion {
                Companion::Lock if complete => out.spent.push(key.clone()),
                Companion::Lock if old => out.stale.push(key.clone()),
                Companion::Lock => {
                    out.alive.insert(backup.to_string());
                }
                Companion::Record if old && !complete => out.orphans.push(key.clone()),
                Companion::Record => {}
            }
        }
        out
    }
}

/// What happened to stale multipart uploads.
#[derive(Debug)]
pub enum Aborted {
    Done(Vec<String>),
    /// The store does not implement ListMultipartUploads (s3s-fs 0.14, for one).
    Unsupported,
}

/// Aborts this tool's multipart uploads under `prefix` started before `before` (a crashed run's
/// leftovers, which S3 bills until aborted). Uploads of keys outside the layout are left alone.
pub async fn abort_stale_uploads(
    client: &Client,
    bucket: &str,
    prefix: &str,
    before: DateTime<Utc>,
    alive: &std::collections::HashSet<String>,
) -> Result<Aborted> {
    let mut aborted = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let resp = client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if is_not_implemented(&e) => return Ok(Aborted::Unsupported),
            Err(e) if is_denied(&e) => {
                return Err(Denied {
                    action: "s3:ListBucketMultipartUploads",
                    resource: format!("s3://{bucket}/{prefix}"),
                }
                .into())
            }
            Err(e) => {
                return Err(describe(
                    "ListMultipartUploads",
                    &format!("s3://{bucket}/{prefix}"),
                    &e,
                ))
            }
        };
        for upload in resp.uploads() {
            let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            let Some(backup) = BackupId::parse(prefix, key) else {
                continue;
            };
            // Stale only when both the store's Initiated and the key's own timestamp (when the
            // backup started) are old: a store's clock can be wrong (moto reports 2010 for every
            // upload), and an in-flight backup must never be aborted by a concurrent prune.
            let initiated = upload
                .initiated()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0));
            let started = initiated.map_or(backup.time, |t| t.max(backup.time));
            if started >= before {
                continue;
            }
            // A backup that has run longer than the age is alive while its lock is rewritten
            // (the heartbeat, every `layout::HEARTBEAT`).
            if alive.contains(key) {
                continue;
            }
            client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| {
                    describe("AbortMultipartUpload", &format!("s3://{bucket}/{key}"), &e)
                })?;
            aborted.push(key.to_string());
        }
        if !resp.is_truncated().unwrap_or(false) {
            return Ok(Aborted::Done(aborted));
        }
        key_marker = resp.next_key_marker().map(String::from);
        id_marker = resp.next_upload_id_marker().map(String::from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Now;
    use crate::layout::DumpFormat;
    use chrono::TimeZone;

    fn listed(time: DateTime<Utc>, stored: Option<DateTime<Utc>>) -> Listed {
        let id = BackupId::new("app", time, DumpFormat::Plain);
        Listed {
            key: id.key(""),
            id,
            size: 1,
            stored,
            recorded: true,
            companions: Vec::new(),
        }
    }

    #[test]
    fn locks_and_records_are_sorted_by_their_backup_and_age() {
        let at = |h| Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap();
        let key = |h| BackupId::new("app", at(h), DumpFormat::Plain).key("p/");
        let obj = |k: String, h| (k, 1, Some(at(h)));
        let before = at(10);
        let objects = vec![
            // Complete, its lock left by a write-only role: spent, whatever its age.
            obj(key(11), 11),
            obj(format!("{}.lock", key(11)), 11),
            obj(format!("{}.json", key(11)), 11),
            // Never completed, old: stale. Young: alive.
            obj(format!("{}.lock", key(2)), 2),
            obj(format!("{}.lock", key(12)), 12),
            // An old backup still running rewrote its lock lately: alive.
            obj(format!("{}.lock", key(3)), 12),
            // Records without their backup: old ones go, a young one stays (its backup may be
            // one the listing passed just before it completed).
            obj(format!("{}.json", key(4)), 4),
            obj(format!("{}.json", key(5)), 12),
            // Not this tool's.
            obj("p/app/notes.json".to_string(), 1),
            obj("p/app/notes.lock".to_string(), 1),
            obj(format!("{}.json.json", key(4)), 1),
        ];
        let left = Leftovers::of("p/", &objects, before);
        assert_eq!(left.spent, [format!("{}.lock", key(11))]);
        assert_eq!(left.stale, [format!("{}.lock", key(2))]);
        assert_eq!(left.orphans, [format!("{}.json", key(4))]);
        let mut alive: Vec<&String> = left.alive.iter().collect();
        alive.sort();
        assert_eq!(alive, [&key(3), &key(12)]);
    }

    #[test]
    fn a_key_dated_after_its_object_was_stored_is_from_the_future() {
        let at = |h| Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap();
        let now = Now {
            runner: at(12),
            store: Some(at(12)),
        };
        let (real, future) = split_future(
            vec![
                listed(at(3), Some(at(4))),
                listed(at(3), None),
                listed(at(11), Some(at(3))),
                listed(at(15), Some(at(11))),
            ],
            &now,
        );
        assert_eq!(real.len(), 2);
        assert_eq!(future.len(), 2);
    }
}
