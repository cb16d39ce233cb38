//! Least-privilege IAM JSON for one bucket and prefix, from the features in use (backup
//! always; prune, restore), and, for GitHub Actions, the role's OIDC trust policy and a
//! bucket-policy form of the same statements. Pure: it builds the documents, and
//! `commands::policy` prints them.
//!
//! The actions are the ones this tool's requests need: PutObject (PutObject, CreateMultipartUpload,
//! UploadPart, CompleteMultipartUpload, and the `.lock` object that claims a key), AbortMultipartUpload,
//! GetObject (HeadObject, and the source side of the CopyObject that attaches sha256 metadata),
//! ListBucket (ListObjectsV2), DeleteObject (DeleteObjects, and the backup's own lock) and
//! ListBucketMultipartUploads.

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

/// What the credentials are used for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub prune: bool,
    pub restore: bool,
    /// Restores choose a backup by listing (`--latest`, `--at`).
    pub restore_latest: bool,
    /// No s3:GetObject for the backup itself.
    pub minimal: bool,
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
    AnyOfRepo,
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
    let mut out = vec![if f.minimal {
        Statement::allow(
            "BackupWriteObjects",
            &["s3:PutObject", "s3:AbortMultipartUpload"],
            &objects_arn,
        )
    } else {
        // Works without GetObject, with warnings: no same-second collision check (HeadObject)
        // and no sha256 metadata on multipart uploads (CopyObject reads the source).
        Statement::allow(
            "BackupWriteObjectsGetForHeadObjectAndSha256CopyObject",
            &["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"],
            &objects_arn,
        )
    }];
    if !f.minimal && !f.prune {
        // The lock that claims the key is taken only after HeadObject, so --minimal needs no
        // delete; prune's DeleteObject below covers lock objects too.
        out.push(Statement::allow(
            "BackupDeleteItsLockObject",
            &["s3:DeleteObject"],
            &format!("{objects_arn}.lock"),
        ));
    }
    if f.prune || f.restore_latest {
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
            "PruneDeleteBackups",
            &["s3:DeleteObject"],
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
            "RestoreReadBackups",
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
        Subject::AnyOfRepo => json!({
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
    fn feature_table() {
        let f = Features::default;
        for (features, want) in [
            (
                Features {
                    minimal: true,
                    ..f()
                },
                &["s3:AbortMultipartUpload", "s3:PutObject"][..],
            ),
            (
                f(),
                &[
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:GetObject",
                    "s3:PutObject",
                ],
            ),
            (
                Features {
                    prune: true,
                    minimal: true,
                    ..f()
                },
                &[
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                    "s3:PutObject",
                ],
            ),
            (
                Features {
                    restore: true,
                    restore_latest: true,
                    minimal: true,
                    ..f()
                },
                &[
                    "s3:AbortMultipartUpload",
                    "s3:GetObject",
                    "s3:ListBucket",
                    "s3:PutObject",
                ],
            ),
        ] {
            assert_eq!(
                actions(&statements("b-1", "p/", features)),
                want,
                "{features:?}"
            );
        }
    }

    #[test]
    fn sids_are_unique_and_alphanumeric() {
        let all = Features {
            prune: true,
            restore: true,
            restore_latest: true,
            minimal: false,
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
