//! The artifact store against a local directory and against a real S3-compatible server
//! (moto's, started on a loopback port; the test fails when it cannot start).

use std::io::Read as _;
use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt as _;
use sha2::{Digest, Sha256};
use switchyard_proto::scheduler::v1::LeasedTask;

use super::*;

fn task(attempt: u32) -> LeasedTask {
    LeasedTask {
        run_id: "run-1".into(),
        task_id: "task-1".into(),
        attempt,
        ..LeasedTask::default()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn open_local(root: &FsPath) -> ArtifactStore {
    ArtifactStore::open_with(&local_url(root), std::iter::empty(), &[]).expect("local store")
}

/// Content of a `file://` location, read back through the filesystem.
fn read_location(location: &str) -> Vec<u8> {
    let path = Url::parse(location)
        .expect("location is a URL")
        .to_file_path()
        .expect("a file path");
    std::fs::read(path).expect("stored file")
}

#[tokio::test]
async fn file_artifacts_are_stored_with_size_sha256_and_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    let from = root.join("work");
    std::fs::create_dir_all(from.join("nested")).expect("mkdir");
    std::fs::write(from.join("report.txt"), b"hello\n").expect("write");
    // Bigger than a part: goes up as a multipart upload.
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(from.join("big.bin"), &big).expect("write");
    std::fs::write(from.join("nested").join("inner.txt"), b"x").expect("write");
    std::fs::write(from.join("bad name.txt"), b"x").expect("write");
    std::os::unix::fs::symlink(from.join("report.txt"), from.join("link.txt")).expect("symlink");
    let store = open_local(&root).with_limits(Limits {
        part_bytes: 1024,
        ..Limits::default()
    });

    let stored = store.store_dir(&from, &task(2)).await;

    let names: Vec<&str> = stored.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["big.bin", "report.txt"],
        "subdirectories, symlinks and unsafe names are skipped"
    );
    let report = &stored[1];
    assert_eq!(
        report.location,
        format!(
            "file://{}/artifacts/run-1/task-1-2/report.txt",
            root.display()
        )
    );
    assert_eq!(report.size_bytes, 6);
    assert_eq!(
        report.sha256,
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    );
    assert_eq!(read_location(&report.location), b"hello\n");
    let big_stored = &stored[0];
    assert_eq!(big_stored.size_bytes, big.len() as u64);
    assert_eq!(big_stored.sha256, sha256_hex(&big));
    assert_eq!(read_location(&big_stored.location), big);
}

#[tokio::test]
async fn artifact_limits_skip_what_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = dir.path().join("work");
    std::fs::create_dir_all(&from).expect("mkdir");
    for (name, size) in [("a", 5), ("b", 20), ("c", 8), ("d", 4)] {
        std::fs::write(from.join(name), vec![b'x'; size]).expect("write");
    }
    let sized = open_local(dir.path()).with_limits(Limits {
        max_file_bytes: 10,
        max_total_bytes: 15,
        ..Limits::default()
    });
    let stored = sized.store_dir(&from, &task(1)).await;
    let names: Vec<&str> = stored.iter().map(|a| a.name.as_str()).collect();
    // a (5) fits, b (20) is over the file limit, c (8) brings the total to 13, d (4) would
    // make 17.
    assert_eq!(names, ["a", "c"]);

    let counted = open_local(dir.path()).with_limits(Limits {
        max_files: 2,
        ..Limits::default()
    });
    assert_eq!(counted.store_dir(&from, &task(2)).await.len(), 2);
}

#[tokio::test]
async fn a_failed_artifact_upload_is_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = dir.path().join("work");
    std::fs::create_dir_all(&from).expect("mkdir");
    // More files than failures tolerated in a row: the rest are skipped, not retried.
    for n in 0..5 {
        std::fs::write(from.join(format!("out{n}.txt")), b"data").expect("write");
    }
    let store = open_local(dir.path());
    // A plain file where the run's directory must go: every put under it fails.
    std::fs::write(dir.path().join("artifacts").join("run-1"), b"in the way").expect("write");
    assert!(store.store_dir(&from, &task(1)).await.is_empty());
    // A missing artifacts directory is simply nothing to store.
    assert!(
        store
            .store_dir(&dir.path().join("absent"), &task(1))
            .await
            .is_empty()
    );
}

#[test]
fn artifact_store_urls_and_options_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |url: &str, options: &[(&str, &str)]| {
        let options: Vec<(String, String)> = options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ArtifactStore::open_with(url, std::iter::empty(), &options)
    };
    let refusal = |url: &str, options: &[(&str, &str)]| match open(url, options) {
        Ok(_) => panic!("{url} accepted"),
        Err(error) => error.to_string(),
    };
    assert!(refusal("ftp://host/x", &[]).contains("unsupported artifact store scheme `ftp`"));
    assert!(refusal("artifacts", &[]).contains("is not a URL"));
    assert!(refusal("s3:///prefix", &[]).contains("name a bucket"));
    assert!(refusal("file://host/tmp/x", &[]).contains("names no host"));
    assert!(refusal("s3://bucket/p", &[("aws_colour", "blue")]).contains("aws_colour"));
    let local = format!("file://{}/a", dir.path().display());
    assert!(refusal(&local, &[("aws_region", "x")]).contains("s3:// stores only"));
    assert!(open(&local, &[]).is_ok());
    assert!(dir.path().join("a").is_dir(), "the directory is created");
    assert!(
        open(
            "s3://bucket/prefix",
            &[
                ("aws_endpoint", "http://127.0.0.1:1"),
                ("AWS_ALLOW_HTTP", "true")
            ]
        )
        .is_ok(),
        "opening makes no request"
    );
}

#[test]
fn artifact_names_that_are_keys_as_is() {
    for ok in ["report.txt", "a-b_c.tar.gz", "x+y=z,1@(2)", ".coverage"] {
        assert!(is_key_safe(ok), "{ok}");
    }
    let long = "x".repeat(256);
    for bad in [
        "",
        ".",
        "..",
        "a b",
        "a%b",
        "a#b",
        "naïve",
        "a?b",
        long.as_str(),
    ] {
        assert!(!is_key_safe(bad), "{bad}");
    }
}

/// moto's S3 server on a free loopback port; killed on drop.
struct Moto {
    child: std::process::Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn log_text(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(self.log.path()).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// Starts the server and creates `bucket`, or panics saying why.
    async fn start(bucket: &str) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let stderr = log.reopen().expect("log file");
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start moto_server ({error}); install it with `pip install 'moto[server]'` (make services and .ci/run do)"
                )
            });
        let mut moto = Moto { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}:\n{}", moto.log_text());
            }
            match moto.create_bucket(bucket).await {
                Ok(()) => return moto,
                Err(error) if Instant::now() > deadline => {
                    panic!(
                        "moto_server did not answer within 60s ({error}):\n{}",
                        moto.log_text()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// `PUT /<bucket>` (moto takes it unsigned).
    async fn create_bucket(&mut self, bucket: &str) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let answer = String::from_utf8_lossy(&answer);
        if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "bucket not created: {}",
                answer.lines().next().unwrap_or_default()
            )))
        }
    }

    fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", format!("http://127.0.0.1:{}", self.port)),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", "test".into()),
            ("aws_secret_access_key", "test".into()),
            ("aws_region", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[tokio::test]
async fn s3_artifacts_go_to_an_s3_compatible_server() {
    let moto = Moto::start("artifacts").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let from = dir.path().join("work");
    std::fs::create_dir_all(&from).expect("mkdir");
    std::fs::write(from.join("small.txt"), b"hello\n").expect("write");
    // Past one 5 MiB part: a two-part multipart upload.
    let big: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(from.join("big.bin"), &big).expect("write");
    let store = ArtifactStore::open_with("s3://artifacts/ci", std::iter::empty(), &moto.options())
        .expect("s3 store")
        .with_limits(Limits {
            part_bytes: 5 << 20,
            ..Limits::default()
        });

    let stored = store.store_dir(&from, &task(3)).await;

    let found: Vec<(&str, &str, u64)> = stored
        .iter()
        .map(|a| (a.name.as_str(), a.location.as_str(), a.size_bytes))
        .collect();
    assert_eq!(
        found,
        [
            (
                "big.bin",
                "s3://artifacts/ci/run-1/task-1-3/big.bin",
                big.len() as u64
            ),
            ("small.txt", "s3://artifacts/ci/run-1/task-1-3/small.txt", 6),
        ],
        "moto log:\n{}",
        moto.log_text()
    );
    assert_eq!(stored[0].sha256, sha256_hex(&big));
    assert_eq!(stored[1].sha256, sha256_hex(b"hello\n"));
    // Read back through a store opened from the reported location, as the scheduler does.
    for (artifact, content) in [(&stored[0], &big[..]), (&stored[1], &b"hello\n"[..])] {
        let url = Url::parse(&artifact.location).expect("URL");
        let (reader, path) = object_store::parse_url_opts(&url, moto.options()).expect("store");
        let bytes = reader
            .get(&path)
            .await
            .expect("object")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&bytes[..], content, "{}", artifact.location);
    }
}
