//! Least-privilege IAM JSON for one bucket and prefix, per purpose (backup, prune, restore),
//! and, for GitHub Actions, the role's OIDC trust policy (always pinned to a ref, an
//! environment, or, asked for explicitly, any ref) and a bucket-policy form of the same
//! statements. Pure: it builds the documents, and `commands::policy` prints them.
//!
//! The actions are the ones this tool's requests need:
//! - backup: PutObject (PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//!   the `.lock` that claims a key and the `.json` integrity record) and AbortMultipartUpload.
//!   It reads nothing and deletes nothing: its HeadObject, read-back of the lock and deletion of
//!   the lock are attempted, and a denial is taken as "unknown" or "leave it for prune".
//! - prune: ListBucket (ListObjectsV2, under the prefix), ListBucketMultipartUploads,
//!   DeleteObject (backups, their records and locks) and AbortMultipartUpload (stale uploads).
//! - restore, verify, list and check: ListBucket (under the prefix) and GetObject (backups and
//!   their records).

use serde::Serialize;
use serde_json::{json, Value};

const OIDC_ISSUER: &str = "token.actions.githubusercontent.com";

/// What `policy` prints with --github-repo: still one JSON document.
#[derive(Debug, Serialize)]
pub struct ForGitHub {
    /// The role's permissions policy (the document printed without --github-repo).
    pub permissions: Document,
    pub trust_policy: Document,
    /// The same permissions granted to the role by the bucket, for accounts that prefer it.
    pub bucket_policy: Document,
}

/// An IAM policy document; fields in the order IAM's own examples use.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Document {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: &'static str,
    pub effect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Value>,
    pub action: Vec<&'static str>,
    /// None in a trust policy, which names no resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
}

impl Statement {
    fn allow(sid: &'static str, action: &[&'static str], resource: &str) -> Self {
        Self {
            sid,
            effect: "Allow",
            principal: None,
            action: action.to_vec(),
            resource: Some(resource.to_string()),
            condition: None,
        }
    }
}

/// What the credentials are used for: one role may serve several purposes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `backup`, without `--verify` or `--keep-*`.
    pub backup: bool,
    /// `prune`, and `backup --keep-*`.
    pub prune: bool,
    /// `restore`, `verify`, `list`, `check`, and `backup --verify`.
    pub restore: bool,
}

/// Who may assume the role, from GitHub Actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubTrust {
    pub repo: String,
    pub subject: Subject,
    pub account_id: String,
    pub role_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Ref(String),
    Environment(String),
    AnyRef,
}

pub fn document(statement: Vec<Statement>) -> Document {
    Document {
        version: "2012-10-17",
        statement,
    }
}

/// The permission statements, each with a Sid saying what needs it.
pub fn statements(bucket: &str, prefix: &str, f: Features) -> Vec<Statement> {
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let objects_arn = format!("arn:aws:s3:::{bucket}/{prefix}*");
    let mut out = Vec::new();
    if f.backup {
        out.push(Statement::allow(
            "BackupWriteObjectsOnly",
            &["s3:PutObject", "s3:AbortMultipartUpload"],
            &objects_arn,
        ));
    }
    if f.prune || f.restore {
        let mut list = Statement::allow("ListBackupsUnderPrefix", &["s3:ListBucket"], &bucket_arn);
        // Without a prefix the whole bucket is the backups' place; a condition on an absent
        // s3:prefix key would deny the prefix-less listing.
        if !prefix.is_empty() {
            list.condition = Some(json!({"StringLike": {"s3:prefix": [format!("{prefix}*")]}}));
        }
        out.push(list);
    }
    if f.prune {
        out.push(Statement::allow(
            "PruneDeleteBackupsAndAbortStaleUploads",
            &["s3:DeleteObject", "s3:AbortMultipartUpload"],
            &objects_arn,
        ));
        // ListMultipartUploads has no s3:prefix condition key; prune passes the prefix itself.
        out.push(Statement::allow(
            "PruneListStaleMultipartUploads",
            &["s3:ListBucketMultipartUploads"],
            &bucket_arn,
        ));
    }
    if f.restore {
        out.push(Statement::allow(
            "RestoreReadBackupsAndRecords",
            &["s3:GetObject"],
            &objects_arn,
        ));
    }
    out
}

/// The role's trust policy: GitHub's OIDC provider, our audience, and the repository's subject.
pub fn trust_policy(t: &GitHubTrust) -> Document {
    let aud = format!("{OIDC_ISSUER}:aud");
    let sub = format!("{OIDC_ISSUER}:sub");
    let condition = match &t.subject {
        Subject::Ref(r) => json!({"StringEquals": {
            aud: "sts.amazonaws.com",
            sub: format!("repo:{}:ref:{r}", t.repo),
        }}),
        Subject::Environment(e) => json!({"StringEquals": {
            aud: "sts.amazonaws.com",
            sub: format!("repo:{}:environment:{e}", t.repo),
        }}),
        Subject::AnyRef => json!({
            "StringEquals": {aud: "sts.amazonaws.com"},
            "StringLike": {sub: format!("repo:{}:*", t.repo)},
        }),
    };
    document(vec![Statement {
        sid: "GitHubActionsAssumeRoleWithWebIdentity",
        effect: "Allow",
        principal: Some(json!({
            "Federated": format!("arn:aws:iam::{}:oidc-provider/{OIDC_ISSUER}", t.account_id)
        })),
        action: vec!["sts:AssumeRoleWithWebIdentity"],
        resource: None,
        condition: Some(condition),
    }])
}

/// The same statements as a bucket policy granting them to the role.
pub fn bucket_policy(statements: &[Statement], t: &GitHubTrust) -> Document {
    let principal = json!({"AWS": format!("arn:aws:iam::{}:role/{}", t.account_id, t.role_name)});
    let with_principal = statements
        .iter()
        .map(|s| Statement {
            principal: Some(principal.clone()),
            ..s.clone()
        })
        .collect();
    document(with_principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(statements: &[Statement]) -> Vec<&'static str> {
        let mut all: Vec<&str> = statements.iter().flat_map(|s| s.action.clone()).collect();
        all.sort();
        all.dedup();
        all
    }

    #[test]
    fn each_purpose_gets_only_its_actions() {
        let f = Features::default;
        for (features, want) in [
            (
                Features {
                    backup: true,
                    ..f()
                },
                &["s3:AbortMultipartUpload", "s3:PutObject"][..],
            ),
            (
                Features { prune: true, ..f() },
                &[
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                ],
            ),
            (
                Features {
                    restore: true,
                    ..f()
                },
                &["s3:GetObject", "s3:ListBucket"],
            ),
        ] {
            assert_eq!(
                actions(&statements("b-1", "p/", features)),
                want,
                "{features:?}"
            );
        }
        // The listing is limited to the prefix; the objects' actions to the prefix's keys.
        let reader = statements(
            "b-1",
            "p/",
            Features {
                restore: true,
                ..f()
            },
        );
        assert_eq!(
            reader[0].condition,
            Some(json!({"StringLike": {"s3:prefix": ["p/*"]}}))
        );
        assert_eq!(reader[1].resource.as_deref(), Some("arn:aws:s3:::b-1/p/*"));
    }

    #[test]
    fn sids_are_unique_and_alphanumeric() {
        let all = Features {
            backup: true,
            prune: true,
            restore: true,
        };
        let s = statements("b-1", "p/", all);
        let mut sids: Vec<&str> = s.iter().map(|s| s.sid).collect();
        assert!(sids
            .iter()
            .all(|s| s.bytes().all(|b| b.is_ascii_alphanumeric())));
        sids.sort();
        sids.dedup();
        assert_eq!(sids.len(), s.len());
    }
}
