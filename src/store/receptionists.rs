//! Receptionists: one per dedicated phone number, unique across the whole server.

use crate::model::{ReceptionistSettings, ReceptionistStatus};
use sqlx::AssertSqlSafe;

use super::{
    Receptionist, Store, StoreError, StoreResult, enum_str, from_json, new_id, now_ms, on_pool,
    parse_enum, receptionist_status_str, to_json, unique_to_conflict,
};

const COLUMNS: &str = "id, workspace_id, phone_number, agent_name, voice, intro_message, \
    language_mode, manual_approval, disclose_ai, disclose_recording, disclose_e_verify, \
    collect_location, enforce_job_location_match, custom_context, questions, score_threshold, \
    status, created_at, updated_at, sms_confirmation, interviewer_ids, default_interviewer_id, \
    carrier";

const PHONE_TAKEN: &str = "this phone number is already used by a receptionist";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    workspace_id: String,
    phone_number: String,
    agent_name: String,
    voice: String,
    intro_message: String,
    language_mode: String,
    manual_approval: bool,
    disclose_ai: bool,
    disclose_recording: bool,
    disclose_e_verify: bool,
    collect_location: bool,
    enforce_job_location_match: bool,
    custom_context: String,
    questions: String,
    score_threshold: i64,
    status: String,
    created_at: i64,
    updated_at: i64,
    sms_confirmation: bool,
    interviewer_ids: String,
    default_interviewer_id: Option<String>,
    carrier: String,
}

impl Row {
    fn into_receptionist(self) -> StoreResult<Receptionist> {
        let score_threshold = u8::try_from(self.score_threshold)
            .map_err(|_| StoreError::Corrupt("score_threshold out of range".into()))?;
        Ok(Receptionist {
            id: self.id,
            workspace_id: self.workspace_id,
            carrier: self.carrier,
            settings: ReceptionistSettings {
                phone_number: self.phone_number,
                agent_name: self.agent_name,
                voice: self.voice,
                intro_message: self.intro_message,
                language_mode: parse_enum("language mode", &self.language_mode)?,
                manual_approval: self.manual_approval,
                disclose_ai: self.disclose_ai,
                disclose_recording: self.disclose_recording,
                disclose_e_verify: self.disclose_e_verify,
                collect_location: self.collect_location,
                enforce_job_location_match: self.enforce_job_location_match,
                custom_context: self.custom_context,
                questions: from_json("questions", &self.questions)?,
                score_threshold,
                status: parse_enum("receptionist status", &self.status)?,
                sms_confirmation: self.sms_confirmation,
                interviewer_ids: from_json("interviewer_ids", &self.interviewer_ids)?,
                default_interviewer_id: self.default_interviewer_id,
            },
            created_at_ms: self.created_at,
            updated_at_ms: self.updated_at,
        })
    }
}

impl Store {
    /// `Conflict { field: "phone_number" }` when the number belongs to any receptionist.
    pub async fn create_receptionist(
        &self,
        workspace_id: &str,
        s: &ReceptionistSettings,
        carrier: &str,
    ) -> StoreResult<Receptionist> {
        let id = new_id();
        let now = now_ms();
        let questions = to_json(&s.questions)?;
        let interviewer_ids = to_json(&s.interviewer_ids)?;
        let sql = format!(
            "INSERT INTO receptionists ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
             $20, $21, $22, $23)"
        );
        on_pool!(self, |pool| {
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(&id)
                .bind(workspace_id)
                .bind(&s.phone_number)
                .bind(&s.agent_name)
                .bind(&s.voice)
                .bind(&s.intro_message)
                .bind(enum_str(&s.language_mode))
                .bind(s.manual_approval)
                .bind(s.disclose_ai)
                .bind(s.disclose_recording)
                .bind(s.disclose_e_verify)
                .bind(s.collect_location)
                .bind(s.enforce_job_location_match)
                .bind(&s.custom_context)
                .bind(&questions)
                .bind(i64::from(s.score_threshold))
                .bind(receptionist_status_str(s.status))
                .bind(now)
                .bind(now)
                .bind(s.sms_confirmation)
                .bind(&interviewer_ids)
                .bind(&s.default_interviewer_id)
                .bind(carrier)
                .execute(pool)
                .await
                .map_err(|e| unique_to_conflict(e, "phone_number", PHONE_TAKEN))?;
        });
        tracing::info!(receptionist_id = %id, %workspace_id, "receptionist created");
        Ok(Receptionist {
            id,
            workspace_id: workspace_id.to_string(),
            carrier: carrier.to_string(),
            settings: s.clone(),
            created_at_ms: now,
            updated_at_ms: now,
        })
    }

    /// Replace every setting. `NotFound` outside the workspace; `Conflict` on a used number.
    pub async fn update_receptionist(
        &self,
        workspace_id: &str,
        id: &str,
        s: &ReceptionistSettings,
        carrier: &str,
    ) -> StoreResult<Receptionist> {
        let now = now_ms();
        let questions = to_json(&s.questions)?;
        let interviewer_ids = to_json(&s.interviewer_ids)?;
        let affected = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE receptionists SET phone_number = $3, agent_name = $4, voice = $5, \
                 intro_message = $6, language_mode = $7, manual_approval = $8, disclose_ai = $9, \
                 disclose_recording = $10, disclose_e_verify = $11, collect_location = $12, \
                 enforce_job_location_match = $13, custom_context = $14, questions = $15, \
                 score_threshold = $16, status = $17, updated_at = $18, sms_confirmation = $19, \
                 interviewer_ids = $20, default_interviewer_id = $21, carrier = $22 \
                 WHERE id = $1 AND workspace_id = $2",
            )
            .bind(id)
            .bind(workspace_id)
            .bind(&s.phone_number)
            .bind(&s.agent_name)
            .bind(&s.voice)
            .bind(&s.intro_message)
            .bind(enum_str(&s.language_mode))
            .bind(s.manual_approval)
            .bind(s.disclose_ai)
            .bind(s.disclose_recording)
            .bind(s.disclose_e_verify)
            .bind(s.collect_location)
            .bind(s.enforce_job_location_match)
            .bind(&s.custom_context)
            .bind(&questions)
            .bind(i64::from(s.score_threshold))
            .bind(receptionist_status_str(s.status))
            .bind(now)
            .bind(s.sms_confirmation)
            .bind(&interviewer_ids)
            .bind(&s.default_interviewer_id)
            .bind(carrier)
            .execute(pool)
            .await
            .map_err(|e| unique_to_conflict(e, "phone_number", PHONE_TAKEN))?
            .rows_affected()
        });
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        tracing::info!(receptionist_id = %id, %workspace_id, "receptionist updated");
        self.get_receptionist(workspace_id, id).await
    }

    pub async fn get_receptionist(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> StoreResult<Receptionist> {
        let sql =
            format!("SELECT {COLUMNS} FROM receptionists WHERE id = $1 AND workspace_id = $2");
        let row: Option<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(id)
                    .bind(workspace_id)
                    .fetch_optional(pool)
                    .await?
            }
        );
        row.ok_or(StoreError::NotFound)?.into_receptionist()
    }

    /// Oldest first.
    pub async fn list_receptionists(
        &self,
        workspace_id: &str,
        status: Option<ReceptionistStatus>,
    ) -> StoreResult<Vec<Receptionist>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM receptionists WHERE workspace_id = $1 \
             AND ($2 IS NULL OR status = $2) ORDER BY created_at, id"
        );
        let status = status.map(receptionist_status_str);
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(workspace_id)
                    .bind(&status)
                    .fetch_all(pool)
                    .await?
            }
        );
        rows.into_iter().map(Row::into_receptionist).collect()
    }

    /// Every live receptionist of every workspace (e.g. to warm prompt caches at start-up).
    pub async fn all_live_receptionists(&self) -> StoreResult<Vec<Receptionist>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM receptionists WHERE status = $1 ORDER BY created_at, id"
        );
        let rows: Vec<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(receptionist_status_str(ReceptionistStatus::Live))
                    .fetch_all(pool)
                    .await?
            }
        );
        rows.into_iter().map(Row::into_receptionist).collect()
    }

    /// The receptionist a call placed to `phone` reaches, in any workspace (call routing).
    pub async fn receptionist_by_phone(&self, phone: &str) -> StoreResult<Option<Receptionist>> {
        let sql = format!("SELECT {COLUMNS} FROM receptionists WHERE phone_number = $1");
        let row: Option<Row> = on_pool!(
            self,
            read | pool | {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(phone)
                    .fetch_optional(pool)
                    .await?
            }
        );
        row.map(Row::into_receptionist).transpose()
    }
}
