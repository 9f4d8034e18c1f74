//! Interviewers: the next, longer screening step a receptionist ingests candidates into.

use super::{Store, StoreError, StoreResult, new_id, now_ms, on_pool};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interviewer {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// Template of the invitation text: `{candidate_name}`, `{interviewer_name}` and
    /// `{interview_link}` are filled in.
    pub invitation_message: String,
    pub interview_link: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An interviewer's settings, validated by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterviewerInput {
    pub name: String,
    pub invitation_message: String,
    pub interview_link: String,
}

type Row = (String, String, String, String, String, i64, i64);

fn from_row(r: Row) -> Interviewer {
    Interviewer {
        id: r.0,
        workspace_id: r.1,
        name: r.2,
        invitation_message: r.3,
        interview_link: r.4,
        created_at_ms: r.5,
        updated_at_ms: r.6,
    }
}

const COLUMNS: &str =
    "id, workspace_id, name, invitation_message, interview_link, created_at, updated_at";

impl Store {
    pub async fn create_interviewer(
        &self,
        workspace_id: &str,
        input: &InterviewerInput,
    ) -> StoreResult<Interviewer> {
        let now = now_ms();
        let i = Interviewer {
            id: new_id(),
            workspace_id: workspace_id.to_string(),
            name: input.name.clone(),
            invitation_message: input.invitation_message.clone(),
            interview_link: input.interview_link.clone(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO interviewers (id, workspace_id, name, invitation_message, \
                 interview_link, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(&i.id)
            .bind(&i.workspace_id)
            .bind(&i.name)
            .bind(&i.invitation_message)
            .bind(&i.interview_link)
            .bind(now)
            .execute(pool)
            .await?;
        });
        tracing::info!(interviewer_id = %i.id, %workspace_id, "interviewer created");
        Ok(i)
    }

    pub async fn update_interviewer(
        &self,
        workspace_id: &str,
        id: &str,
        input: &InterviewerInput,
    ) -> StoreResult<Interviewer> {
        let affected = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE interviewers SET name = $3, invitation_message = $4, interview_link = $5, \
                 updated_at = $6 WHERE id = $1 AND workspace_id = $2",
            )
            .bind(id)
            .bind(workspace_id)
            .bind(&input.name)
            .bind(&input.invitation_message)
            .bind(&input.interview_link)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_interviewer(workspace_id, id).await
    }

    pub async fn get_interviewer(&self, workspace_id: &str, id: &str) -> StoreResult<Interviewer> {
        let sql = format!("SELECT {COLUMNS} FROM interviewers WHERE id = $1 AND workspace_id = $2");
        let row: Option<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(id)
                    .bind(workspace_id)
                    .fetch_optional(pool)
                    .await?
            }
        );
        row.map(from_row).ok_or(StoreError::NotFound)
    }

    /// Oldest first.
    pub async fn list_interviewers(&self, workspace_id: &str) -> StoreResult<Vec<Interviewer>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM interviewers WHERE workspace_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .fetch_all(pool)
                    .await?
            }
        );
        Ok(rows.into_iter().map(from_row).collect())
    }
}
