//! `policy`: prints the least-privilege IAM JSON (`iam`) for the bucket, prefix and features,
//! and with `--github-repo` the role's trust policy and a bucket policy too. No network.

use crate::cli::PolicyArgs;
use crate::config::PolicyConfig;
use crate::iam::{self, ForGitHub};
use anyhow::Result;

pub fn run(args: &PolicyArgs) -> Result<()> {
    let cfg = PolicyConfig::from_args(args)?;
    let statements = iam::statements(&cfg.bucket, &cfg.prefix, cfg.features);
    let text = match &cfg.github {
        None => serde_json::to_string_pretty(&iam::document(statements))?,
        Some(trust) => serde_json::to_string_pretty(&ForGitHub {
            permissions: iam::document(statements.clone()),
            trust_policy: iam::trust_policy(trust),
            bucket_policy: iam::bucket_policy(&statements, trust),
        })?,
    };
    crate::output::json_text(&text)
}
