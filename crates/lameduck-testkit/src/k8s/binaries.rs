//! Where the control-plane binaries are: `LAMEDUCK_K8S_BIN`, or the cache that
//! `scripts/k8s-build` fills (and which it builds first when it is empty).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::Error;

/// The directory that holds `etcd`, `kube-apiserver` and `kube-controller-manager`.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

const NAMES: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

impl Binaries {
    /// Finds the binaries once per test process: `$LAMEDUCK_K8S_BIN` if set, otherwise the
    /// directory `scripts/k8s-build` prints (it builds them when they are not cached yet,
    /// which takes minutes and needs Go).
    pub fn locate() -> Result<Self, Error> {
        static FOUND: OnceLock<Result<Binaries, String>> = OnceLock::new();
        FOUND
            .get_or_init(|| Self::find().map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::Binaries)
    }

    fn find() -> Result<Self, Error> {
        let dir = match std::env::var_os("LAMEDUCK_K8S_BIN") {
            Some(dir) => PathBuf::from(dir),
            None => build()?,
        };
        for name in NAMES {
            if !dir.join(name).is_file() {
                return Err(Error::Binaries(format!(
                    "{} has no {name} (LAMEDUCK_K8S_BIN or scripts/k8s-build)",
                    dir.display()
                )));
            }
        }
        Ok(Self { dir })
    }

    /// The path of `name` (`etcd`, `kube-apiserver` or `kube-controller-manager`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn build() -> Result<PathBuf, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/k8s-build");
    // The script's own progress lines go to stderr, which the test output shows.
    let output = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|source| Error::io(&script, source))?;
    if !output.status.success() {
        return Err(Error::Binaries(format!(
            "{} failed ({}); its error is printed above",
            script.display(),
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim();
    if dir.is_empty() {
        return Err(Error::Binaries(format!(
            "{} printed no directory",
            script.display()
        )));
    }
    Ok(PathBuf::from(dir))
}
