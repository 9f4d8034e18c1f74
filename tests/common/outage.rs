//! A database outage on demand: for PostgreSQL a TCP proxy between the server and the database
//! whose connections can be cut (and new ones refused) and later allowed again; for SQLite another
//! connection holding the database's write lock (`BEGIN EXCLUSIVE`), so every write waits and
//! fails as on a locked or stalled file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::Backend;

pub struct Outage {
    kind: Kind,
}

enum Kind {
    Proxy {
        down: Arc<AtomicBool>,
        links: Arc<Mutex<Vec<JoinHandle<()>>>>,
        accept: JoinHandle<()>,
    },
    SqliteLock {
        url: String,
        holder: Option<sqlx::SqliteConnection>,
    },
}

impl Outage {
    /// For `db_url` on `backend`: the outage and the URL the server should use (PostgreSQL: the
    /// proxy's; SQLite: the same file).
    pub async fn new(backend: Backend, db_url: &str) -> (Outage, String) {
        match backend {
            Backend::Sqlite => (
                Outage {
                    kind: Kind::SqliteLock {
                        url: db_url.to_string(),
                        holder: None,
                    },
                },
                db_url.to_string(),
            ),
            Backend::Postgres => {
                let mut url = url::Url::parse(db_url).unwrap();
                let upstream =
                    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = listener.local_addr().unwrap().port();
                url.set_host(Some("127.0.0.1")).unwrap();
                url.set_port(Some(port)).unwrap();
                let down = Arc::new(AtomicBool::new(false));
                let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
                let accept = tokio::spawn({
                    let (down, links) = (down.clone(), links.clone());
                    async move {
                        while let Ok((mut client, _)) = listener.accept().await {
                            if down.load(Ordering::SeqCst) {
                                // refused: closed at once
                                drop(client);
                                continue;
                            }
                            let upstream = upstream.clone();
                            links.lock().await.push(tokio::spawn(async move {
                                if let Ok(mut server) = TcpStream::connect(&upstream).await {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server)
                                        .await;
                                }
                            }));
                        }
                    }
                });
                (
                    Outage {
                        kind: Kind::Proxy {
                            down,
                            links,
                            accept,
                        },
                    },
                    url.to_string(),
                )
            }
        }
    }

    /// The database becomes unreachable (PostgreSQL: every connection cut, new ones refused) or
    /// unwritable (SQLite).
    pub async fn cut(&mut self) {
        match &mut self.kind {
            Kind::Proxy { down, links, .. } => {
                down.store(true, Ordering::SeqCst);
                for link in links.lock().await.drain(..) {
                    link.abort();
                }
            }
            Kind::SqliteLock { url, holder } => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                *holder = Some(conn);
            }
        }
    }

    /// The database is back.
    pub async fn restore(&mut self) {
        match &mut self.kind {
            Kind::Proxy { down, .. } => down.store(false, Ordering::SeqCst),
            Kind::SqliteLock { holder, .. } => {
                if let Some(mut conn) = holder.take() {
                    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                    conn.close().await.unwrap();
                }
            }
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if let Kind::Proxy { accept, .. } = &self.kind {
            accept.abort();
        }
    }
}
