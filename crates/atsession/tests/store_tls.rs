//! TLS to PostgreSQL and Redis, against private servers this test starts with a certificate
//! it makes (a test CA signs a certificate for 127.0.0.1): a client given the CA connects
//! and works; a client trusting another CA, or only the platform's roots, gets
//! `OpenError::UntrustedCertificate` and stores nothing.
//!
//! Needs `redis-server` (with TLS) and PostgreSQL 15's binaries, and root (PostgreSQL runs
//! as the `postgres` user). Skipped without them, failed if `CI=true`. The machine's own
//! servers are not touched.
#![cfg(any(feature = "postgres", feature = "redis"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atsession::app::SessionManager;
use atsession::store::{AnyStore, OpenError, open};

/// A test CA, a server certificate it signed for 127.0.0.1, and another CA.
struct Certs {
    dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn ca(name: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (rcgen::Issuer::new(params, key), cert.pem())
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let (issuer, ca_pem) = ca("atsession test CA");
    let (_, other_pem) = ca("another CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Certs {
        ca: write("ca.pem", &ca_pem),
        other_ca: write("other-ca.pem", &other_pem),
        cert: write("server.pem", &cert.pem()),
        key: write("server.key", &key.serialize_pem()),
        dir,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Skips (or fails in CI) when a tool is missing.
fn missing(what: &str) {
    assert!(!support::in_ci(), "{what} is needed for the TLS tests");
    eprintln!("skipped: {what} is not available (install it to run the TLS tests)");
}

fn query(url: &Path) -> String {
    url.display()
        .to_string()
        .replace('%', "%25")
        .replace('&', "%26")
}

/// What every untrusted attempt must give.
fn assert_untrusted(e: &OpenError, store: &str) {
    assert!(
        matches!(e, OpenError::UntrustedCertificate { store: s, .. } if *s == store),
        "{e:?}"
    );
    assert!(e.to_string().contains(store));
}

async fn sessions_work(store: AnyStore) {
    let m = SessionManager::new(store);
    let new = m.create("did:plc:tls", "tls.test", ()).await.unwrap();
    assert_eq!(
        m.load(new.token.expose()).await.unwrap().did.as_str(),
        "did:plc:tls"
    );
}

#[cfg(feature = "redis")]
struct RedisServer(Child);

#[cfg(feature = "redis")]
impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls() {
    let c = certs();
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--tls-port")
        .arg(port.to_string())
        .arg("--tls-cert-file")
        .arg(&c.cert)
        .arg("--tls-key-file")
        .arg(&c.key)
        .arg("--tls-ca-cert-file")
        .arg(&c.ca)
        .args(["--tls-auth-clients", "no", "--dir"])
        .arg(c.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        return missing("redis-server");
    };
    let _server = RedisServer(child);
    assert!(wait_for_port(port), "redis-server did not start");
    let base = format!("rediss://127.0.0.1:{port}/0");

    let e = open(&format!("{base}?sslrootcert={}", query(&c.other_ca)))
        .await
        .unwrap_err();
    assert_untrusted(&e, "redis");
    let e = open(&base).await.unwrap_err();
    assert_untrusted(&e, "redis");

    let store = open(&format!("{base}?sslrootcert={}", query(&c.ca)))
        .await
        .unwrap();
    let AnyStore::Redis(redis) = &store else {
        panic!("not redis")
    };
    // Only the layout mark of the one open that was let in.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis.connection())
        .await
        .unwrap();
    let mark = format!("{}schema", atsession::store::redis::DEFAULT_PREFIX);
    assert_eq!(keys, [mark], "the refused connections stored nothing");
    sessions_work(store).await;
}

/// A private PostgreSQL cluster in a temporary directory, run as `postgres`.
#[cfg(feature = "postgres")]
struct PgCluster {
    dir: tempfile::TempDir,
}

#[cfg(feature = "postgres")]
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

#[cfg(feature = "postgres")]
fn as_postgres(args: &[&std::ffi::OsStr]) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(feature = "postgres")]
impl PgCluster {
    fn start(c: &Certs, port: u16) -> Option<Self> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::copy(&c.cert, &cert).unwrap();
        std::fs::copy(&c.key, &key).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let owned = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !owned {
            return None;
        }
        let os = |s: &Path| s.as_os_str().to_owned();
        let initdb = Path::new(PG_BIN).join("initdb");
        if !as_postgres(&[
            initdb.as_os_str(),
            "-D".as_ref(),
            data.as_os_str(),
            "-A".as_ref(),
            "trust".as_ref(),
            "-U".as_ref(),
            "postgres".as_ref(),
            "--no-sync".as_ref(),
        ]) {
            return None;
        }
        let options = format!(
            "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={cert} \
             -c ssl_key_file={key} -c fsync=off",
            sock = dir.path().display(),
            cert = cert.display(),
            key = key.display(),
        );
        let pg_ctl = Path::new(PG_BIN).join("pg_ctl");
        let log = dir.path().join("log");
        let started = as_postgres(&[
            pg_ctl.as_os_str(),
            "-D".as_ref(),
            data.as_os_str(),
            "-l".as_ref(),
            &os(&log),
            "-o".as_ref(),
            options.as_ref(),
            "-w".as_ref(),
            "start".as_ref(),
        ]);
        let cluster = Self { dir };
        started.then_some(cluster)
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgCluster {
    fn drop(&mut self) {
        let pg_ctl = Path::new(PG_BIN).join("pg_ctl");
        let data = self.dir.path().join("data");
        as_postgres(&[
            pg_ctl.as_os_str(),
            "-D".as_ref(),
            data.as_os_str(),
            "-m".as_ref(),
            "immediate".as_ref(),
            "stop".as_ref(),
        ]);
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    use atsession::store::postgres::deadpool_postgres::tokio_postgres;

    let c = certs();
    let port = free_port();
    let Some(_cluster) = PgCluster::start(&c, port) else {
        return missing("PostgreSQL 15 (initdb, pg_ctl) run as the postgres user");
    };
    let base = format!("postgres://postgres@127.0.0.1:{port}/postgres");

    let e = open(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        query(&c.other_ca)
    ))
    .await
    .unwrap_err();
    assert_untrusted(&e, "postgres");
    let e = open(&format!("{base}?sslmode=require")).await.unwrap_err();
    assert_untrusted(&e, "postgres");

    // Nothing was created by the refused attempts.
    let (plain, conn) =
        tokio_postgres::connect(&format!("{base}?sslmode=disable"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let tables: i64 = plain
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'atsession%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);

    let store = open(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        query(&c.ca)
    ))
    .await
    .unwrap();
    let AnyStore::Postgres(pg) = &store else {
        panic!("not postgres")
    };
    let client = pg.pool().get().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the store's connection is encrypted");
    drop(client);
    sessions_work(store).await;
}
