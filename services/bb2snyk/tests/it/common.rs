//! Runs the real `bb2snyk` binary as a user would: a clean environment plus the given variables, in a
//! directory of the test's own.

use std::{path::Path, process::Output};

pub const GROUP: &str = "00000000-0000-4000-8000-00000000a11a";

pub async fn bb2snyk<K: AsRef<str>, V: AsRef<str>>(
    args: &[&str],
    env: impl IntoIterator<Item = (K, V)>,
    cwd: &Path,
) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bb2snyk"));
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k.as_ref(), v.as_ref());
    }
    let output = command.output().await.expect("bb2snyk runs");
    eprintln!(
        "$ bb2snyk {}\n{}{}-> {:?}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status.code()
    );
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh directory under the target dir, removed first if an earlier run left it.
pub fn workdir(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(bb2snyk_test_support::unique(name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// The JSON reports in `dir` whose file names start with `prefix` (`sync-`, `migrate-legacy-`).
pub fn reports(dir: &Path, prefix: &str) -> Vec<serde_json::Value> {
    std::fs::read_dir(dir)
        .expect("the log directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("a report")).expect("JSON"))
        .collect()
}
