//! `backup`: validate, preflight the database and choose pg_dump, claim the key, then store the
//! dump (`ops::backup`: pg_dump → parallel gzip → S3 multipart upload, completed only after
//! pg_dump exited 0 and every part succeeded). Only then verify and prune, and report.

use crate::cli::BackupArgs;
use crate::config::BackupConfig;
use crate::error::{self, Interrupted};
use crate::layout::BackupId;
use crate::ops::{self, claim, prune::Report};
use crate::ping::Pinger;
use crate::report::{self, Outcome};
use crate::signals::{self, or_stop};
use crate::source::{pg_dump, preflight};
use crate::{output, s3};
use anyhow::Result;
use chrono::Utc;
use std::time::Instant;

pub async fn run(args: &BackupArgs) -> Result<()> {
    let cfg = BackupConfig::from_args(args)?;
    let Some(url) = &cfg.ping else {
        return backup(&cfg, &mut None).await;
    };
    // The pings frame the run: they never change its outcome (see `ping`).
    let pinger = Pinger::new(url);
    pinger.start().await;
    let mut outcome = None;
    let result = backup(&cfg, &mut outcome).await;
    // If `main` drops the command during a ping (grace over, second signal), it reports
    // what the guard says, not "stopped before it finished cleaning up".
    match (&result, outcome) {
        (Ok(()), json) => {
            let _done =
                signals::context("the backup is complete; its health-check ping was not sent");
            pinger.success(json.as_deref().unwrap_or("{}")).await
        }
        (Err(e), _) => {
            let line = error::one_line(e);
            let _failed = signals::context(line.clone());
            let stopped = e.downcast_ref::<Interrupted>().is_some();
            pinger.fail(&line, stopped).await
        }
    }
    result
}

/// The backup itself; `outcome` gets its JSON once it is known.
async fn backup(cfg: &BackupConfig, outcome_json: &mut Option<String>) -> Result<()> {
    let started = Instant::now();
    output::group("Preflight: PostgreSQL, pg_dump, S3");
    // Nothing is written before the key is claimed: a signal here just stops.
    let preflight = async {
        let server = preflight::check(&cfg.conn).await?;
        let dump = pg_dump::choose(server.version, cfg.pg_dump_path.as_deref()).await?;
        Ok((server, dump))
    };
    let (server, dump) = or_stop(preflight, "stopped before anything was written").await?;
    let client = s3::client(&cfg.s3).await?;
    let id = BackupId::new(&server.database, Utc::now(), cfg.format).with_codec(cfg.codec());
    let claim = claim::claim_key(&client, &cfg.s3, &cfg.object, id).await?;
    let stored = ops::backup::store(&client, cfg, &server, &dump, &claim).await?;
    let key = claim.key;
    let _complete = signals::context(format!("the backup {} is complete", stored.uri));
    let size = stored.counters.compressed();
    // From here on the backup exists. A signal stops what is left (verification, retention)
    // and the outcome is still reported, with exit 130/143.
    let verified = cfg.verify && verify(&client, cfg, &key, &stored.sha256).await?;
    let retention = match signals::stop_requested() {
        None => {
            if !cfg.retention.is_empty() {
                output::group("Retention");
            }
            ops::prune::after_backup(&client, cfg, &server.database, &key, size).await?
        }
        Some(_) => None,
    };
    output::end_group();
    let stopped = signals::stop_requested().map(|sig| {
        let undone = undone(cfg, verified, retention.as_ref());
        anyhow::Error::new(Interrupted(sig))
            .context(format!("the backup {} is complete; {undone}", stored.uri))
    });
    let outcome = Outcome {
        uri: stored.uri,
        key,
        bucket: cfg.s3.bucket.clone(),
        database: server.database,
        format: cfg.format.name(),
        compression: cfg.codec().compression.name(),
        encrypted: cfg.codec().encrypted,
        size,
        raw_size: stored.counters.raw(),
        sha256: stored.sha256,
        duration_seconds: started.elapsed().as_secs_f64(),
        parts: stored.counters.parts(),
        part_size: stored.part_size,
        server_version: server.version_text,
        pg_dump_version: dump.version_text,
        metadata_complete: stored.metadata_complete,
        verified,
        pruned_count: retention.as_ref().map_or(0, |r| r.deleted.len()),
        kept_count: retention
            .as_ref()
            .filter(|r| r.skipped.is_none())
            .map(Report::kept),
        pruned: retention
            .as_ref()
            .map(|r| r.deleted.clone())
            .unwrap_or_default(),
        retention,
    };
    *outcome_json = serde_json::to_string(&outcome).ok();
    report::backup(&outcome, cfg.json)?;
    stopped.map_or(Ok(()), Err)
}

/// `--verify`: reads the new object back. `false` when a signal stopped it.
async fn verify(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    key: &str,
    sent_sha256: &str,
) -> Result<bool> {
    output::group("Verify");
    match or_stop(
        ops::verify::key(client, &cfg.s3, key, None, Some(sent_sha256)),
        "verify stopped",
    )
    .await
    {
        Ok(line) => {
            output::note(&line);
            Ok(true)
        }
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a signal after the upload left undone, and what to run.
fn undone(cfg: &BackupConfig, verified: bool, retention: Option<&Report>) -> String {
    match retention {
        Some(r) if r.interrupted => format!(
            "retention stopped after deleting {} backups: run prune to finish",
            r.deleted.len()
        ),
        Some(_) => "the signal came as retention finished".to_string(),
        None if cfg.verify && !verified => {
            "it was neither verified nor pruned: run verify, then prune".to_string()
        }
        None if !cfg.retention.is_empty() => "retention was not run: run prune".to_string(),
        None => "the signal came as it finished: nothing was left undone".to_string(),
    }
}
