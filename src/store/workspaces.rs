//! Workspaces and API keys. Keys are random, shown once, and stored only as a SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{
    Principal, Role, Store, StoreError, StoreResult, Workspace, new_id, now_ms, on_pool, open_tx,
};

/// An API key as listed: never the key or its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// A new plaintext API key: `rk_` and 64 hex digits (256 random bits).
fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("rk_{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a key.
pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

impl Store {
    /// Create a workspace and its first admin key; the plaintext key is returned once.
    pub async fn create_workspace(&self, name: &str) -> StoreResult<(Workspace, String)> {
        let workspace = Workspace {
            id: new_id(),
            name: name.to_string(),
            created_at_ms: now_ms(),
        };
        let key = generate_key();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&workspace.id)
                .bind(&workspace.name)
                .bind(workspace.created_at_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO api_keys (key_hash, id, workspace_id, role, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(hash_api_key(&key))
            .bind(new_id())
            .bind(&workspace.id)
            .bind(Role::Admin.as_str())
            .bind(workspace.created_at_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        tracing::info!(workspace_id = %workspace.id, "workspace created");
        Ok((workspace, key))
    }

    /// A new key for an existing workspace; the plaintext key is returned once.
    pub async fn create_api_key(&self, workspace_id: &str, role: Role) -> StoreResult<String> {
        self.create_named_api_key(workspace_id, role, "")
            .await
            .map(|(_, key)| key)
    }

    /// A new named key; its description and the plaintext key (returned this once).
    pub async fn create_named_api_key(
        &self,
        workspace_id: &str,
        role: Role,
        name: &str,
    ) -> StoreResult<(ApiKeyInfo, String)> {
        let key = generate_key();
        let info = ApiKeyInfo {
            id: new_id(),
            name: name.to_string(),
            role,
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        let result = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO api_keys (key_hash, id, workspace_id, role, created_at, name) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(hash_api_key(&key))
            .bind(&info.id)
            .bind(workspace_id)
            .bind(role.as_str())
            .bind(info.created_at_ms)
            .bind(&info.name)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        match result {
            Ok(_) => Ok((info, key)),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The workspace and role of a key, or `None` for an unknown or revoked key.
    pub async fn authenticate(&self, api_key: &str) -> StoreResult<Option<Principal>> {
        let hash = hash_api_key(api_key);
        let row: Option<(String, String, String, String)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT workspace_id, role, id, name FROM api_keys \
                 WHERE key_hash = $1 AND revoked_at IS NULL",
                )
                .bind(&hash)
                .fetch_optional(pool)
                .await?
            }
        );
        row.map(|(workspace_id, role, key_id, key_name)| {
            Ok(Principal {
                workspace_id,
                role: super::parse_enum("role", &role)?,
                key_id,
                key_name,
            })
        })
        .transpose()
    }

    /// The workspace's keys, oldest first, revoked ones included (never the key itself).
    pub async fn list_api_keys(&self, workspace_id: &str) -> StoreResult<Vec<ApiKeyInfo>> {
        let rows: Vec<(String, String, String, i64, Option<i64>)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(
                    "SELECT id, name, role, created_at, revoked_at FROM api_keys \
                 WHERE workspace_id = $1 ORDER BY created_at, id",
                )
                .bind(workspace_id)
                .fetch_all(pool)
                .await?
            }
        );
        rows.into_iter()
            .map(|(id, name, role, created_at_ms, revoked_at_ms)| {
                Ok(ApiKeyInfo {
                    id,
                    name,
                    role: super::parse_enum("role", &role)?,
                    created_at_ms,
                    revoked_at_ms,
                })
            })
            .collect()
    }

    /// Revoke a key of this workspace (idempotent). The last active admin key cannot be revoked:
    /// `Conflict { field: "id" }`, so a workspace is never locked out of its own settings.
    pub async fn revoke_api_key(&self, workspace_id: &str, id: &str) -> StoreResult<()> {
        let now = now_ms();
        on_pool!(self, |pool, begin| {
            let mut tx = open_tx(pool, begin).await?;
            let key: Option<(String, Option<i64>)> = sqlx::query_as(
                "SELECT role, revoked_at FROM api_keys WHERE id = $1 AND workspace_id = $2",
            )
            .bind(id)
            .bind(workspace_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (role, revoked_at) = key.ok_or(StoreError::NotFound)?;
            if revoked_at.is_some() {
                return Ok(());
            }
            if role == Role::Admin.as_str() {
                let (admins,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM api_keys WHERE workspace_id = $1 AND role = 'admin' \
                     AND revoked_at IS NULL",
                )
                .bind(workspace_id)
                .fetch_one(&mut *tx)
                .await?;
                if admins <= 1 {
                    return Err(StoreError::Conflict {
                        field: "id",
                        message: "this is the workspace's last admin key; create another first"
                            .into(),
                    });
                }
            }
            sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND workspace_id = $2")
                .bind(id)
                .bind(workspace_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(key_id = %id, %workspace_id, "API key revoked");
            Ok(())
        })
    }

    pub async fn get_workspace(&self, id: &str) -> StoreResult<Workspace> {
        let row: Option<(String, String, i64)> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as("SELECT id, name, created_at FROM workspaces WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
        );
        let (id, name, created_at_ms) = row.ok_or(StoreError::NotFound)?;
        Ok(Workspace {
            id,
            name,
            created_at_ms,
        })
    }
}
