//! `verify`: check a backup is whole without restoring it (`ops::verify`), and with
//! `--restore-check` also restore it into a scratch database. Exit 0 good, 1 damaged or refused.

use crate::cli::VerifyArgs;
use crate::config::VerifyConfig;
use crate::ops::{restore, select, verify};
use crate::{download, output, s3};
use anyhow::Result;

pub async fn run(args: &VerifyArgs) -> Result<()> {
    let cfg = VerifyConfig::from_args(args)?;
    let client = s3::client(&cfg.s3).await?;
    let key = select::key(&client, &cfg.s3, &cfg.which).await?;
    let identities = cfg.identities.as_ref();
    download::check_decryptable(&cfg.s3.prefix, &key, identities)?;
    output::data_line(
        &verify::key(&client, &cfg.s3, &key, identities, None, cfg.unverified).await?,
    );
    if let Some(conn) = &cfg.scratch {
        let restored = restore::into(
            &client,
            &cfg.s3,
            &key,
            conn,
            false,
            identities,
            cfg.unverified,
        )
        .await?;
        output::data_line(format_args!(
            "restore check: restored into `{}`, {} tables",
            restored.database, restored.tables
        ));
    }
    Ok(())
}
