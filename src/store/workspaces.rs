//! Workspaces and API keys. Keys are random, shown once, and stored only as a SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Principal, Role, Store, StoreError, StoreResult, Workspace, new_id, now_ms, on_pool};

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
            let mut tx = pool.begin_with(begin).await?;
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
        let key = generate_key();
        let result = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO api_keys (key_hash, id, workspace_id, role, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(hash_api_key(&key))
            .bind(new_id())
            .bind(workspace_id)
            .bind(role.as_str())
            .bind(now_ms())
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        match result {
            Ok(_) => Ok(key),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The workspace and role of a key, or `None` for an unknown or revoked key.
    pub async fn authenticate(&self, api_key: &str) -> StoreResult<Option<Principal>> {
        let hash = hash_api_key(api_key);
        let row: Option<(String, String)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT workspace_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            )
            .bind(&hash)
            .fetch_optional(pool)
            .await?
        });
        row.map(|(workspace_id, role)| {
            Ok(Principal {
                workspace_id,
                role: super::parse_enum("role", &role)?,
            })
        })
        .transpose()
    }

    pub async fn get_workspace(&self, id: &str) -> StoreResult<Workspace> {
        let row: Option<(String, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT id, name, created_at FROM workspaces WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let (id, name, created_at_ms) = row.ok_or(StoreError::NotFound)?;
        Ok(Workspace {
            id,
            name,
            created_at_ms,
        })
    }
}
