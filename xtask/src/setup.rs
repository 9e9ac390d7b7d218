//! `cargo xtask setup`: everything the build, tests and demo need that is not a Rust crate.
//! Each item is checked first and fetched only when missing or wrong, so a second run only
//! hashes two small files and looks at a few paths.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::apt::{self, Apt};
use crate::{Repo, cmd, fetch};

pub const ORT_VERSION: &str = "1.31.1";

/// The ONNX Runtime wheel for one platform. The wheel is a plain zip that ships the C library
/// the `ort` crate loads at run time; Python itself is only used to download it.
#[derive(Debug)]
struct Wheel {
    pip_platform: &'static str,
    file: &'static str,
    sha256: &'static str,
}

const MODEL_FILE: &str = "yolox_nano.onnx";
const MODEL_SHA256: &str = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14";
/// The YOLOX project's own published copy, for machines without the shared folder.
const MODEL_URL: &str =
    "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx";

const CLIP_FILE: &str = "vtest.avi";
/// Same bytes in the shared folder and in Debian 12's opencv-doc 4.6.0+dfsg-12.
const CLIP_SHA256: &str = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf";
const CLIP_IN_DEB: &str = "usr/share/doc/opencv-doc/examples/data/vtest.avi";

/// What later commands need from the cache (absolute paths).
#[derive(Debug)]
pub struct Assets {
    pub ort_lib: PathBuf,
    pub clip: PathBuf,
}

/// `cargo xtask setup` itself.
pub fn command(repo: &Repo, args: &[String]) -> Result<()> {
    crate::no_args("setup", args)?;
    run(repo).map(drop)
}

/// Makes sure everything is present, printing one line per item.
pub fn run(repo: &Repo) -> Result<Assets> {
    let mut apt = Apt::default();
    let ort_lib = onnxruntime(repo, &mut apt).context("set up ONNX Runtime")?;
    println!("onnxruntime {ORT_VERSION}: ok ({})", repo.rel(&ort_lib));
    let model = model(repo, &mut apt).context("set up the model")?;
    println!("model {MODEL_FILE}: ok ({})", repo.rel(&model));
    let clip = clip(repo, &mut apt).context("set up the sample clip")?;
    println!("sample {CLIP_FILE}: ok ({})", repo.rel(&clip));
    debian_packages(&mut apt).context("set up Debian packages")?;
    e2e_packages(repo).context("set up the browser tests' npm packages")?;
    let frames = bench_frames(repo, &clip).context("set up the benchmark frames")?;
    println!("bench frames: ok ({})", repo.rel(&frames));
    Ok(Assets { ort_lib, clip })
}

fn ort_wheel() -> Result<Wheel> {
    use std::env::consts::{ARCH, OS};
    match (OS, ARCH) {
        ("linux", "x86_64") => Ok(Wheel {
            pip_platform: "manylinux_2_28_x86_64",
            file: "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
            sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
        }),
        ("linux", "aarch64") => Ok(Wheel {
            pip_platform: "manylinux_2_28_aarch64",
            file: "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl",
            sha256: "da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3",
        }),
        (os, arch) => bail!(
            "no ONNX Runtime {ORT_VERSION} wheel is pinned for {os}/{arch}; \
             supported: linux/x86_64, linux/aarch64"
        ),
    }
}

/// `.cache/onnxruntime/libonnxruntime.so`, extracted from the pinned wheel.
fn onnxruntime(repo: &Repo, apt: &mut Apt) -> Result<PathBuf> {
    let wheel = ort_wheel()?;
    let dir = repo.cache().join("onnxruntime");
    let lib = dir.join("libonnxruntime.so");
    // The stamp is written after the library, so a matching stamp means a complete library
    // from exactly this wheel; no need to hash 20 MB on every run.
    let stamp = dir.join("STAMP");
    let stamped = fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wheel.sha256);
    if stamped && lib.is_file() {
        return Ok(lib);
    }

    let downloads = repo.cache().join("downloads");
    let wheel_path = downloads.join(wheel.file);
    if !fetch::has_sha256(&wheel_path, wheel.sha256)? {
        if wheel_path.exists() {
            // pip would keep a damaged file it finds under the expected name.
            fs::remove_file(&wheel_path)
                .with_context(|| format!("remove damaged {}", wheel_path.display()))?;
        }
        eprintln!("xtask: downloading the onnxruntime {ORT_VERSION} wheel with pip");
        fetch::create_dir(&downloads)?;
        let python = python_with_pip(apt)?;
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "download", "--disable-pip-version-check"])
            .arg(format!("onnxruntime=={ORT_VERSION}"))
            .args(["--no-deps", "--only-binary=:all:", "--platform"])
            .arg(wheel.pip_platform)
            // Explicit platform and Python version make pip fetch this exact wheel whatever
            // Python runs it; the wheel is never installed.
            .args(["--python-version", "3.11", "-d"])
            .arg(&downloads);
        cmd::run(&mut pip).context("download the onnxruntime wheel")?;
        if !wheel_path.is_file() {
            bail!(
                "pip finished but {} is not there (did pip pick another file? see its output)",
                wheel_path.display()
            );
        }
        fetch::verify_sha256(&wheel_path, wheel.sha256)?;
    }

    eprintln!(
        "xtask: extracting libonnxruntime from {}",
        repo.rel(&wheel_path)
    );
    let member = format!("onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}");
    let file = File::open(&wheel_path).with_context(|| format!("open {}", wheel_path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("read {} as a zip archive", wheel_path.display()))?;
    let mut entry = archive
        .by_name(&member)
        .with_context(|| format!("find {member} in {}", wheel_path.display()))?;
    fetch::write_stream_atomic(&mut entry, &lib, 0o755)
        .with_context(|| format!("extract {member} from {}", wheel_path.display()))?;
    fetch::write_atomic(&stamp, format!("{}\n", wheel.sha256).as_bytes())?;
    Ok(lib)
}

/// A Python that has pip: the one on PATH, else Debian's after installing `python3-pip`.
fn python_with_pip(apt: &mut Apt) -> Result<PathBuf> {
    let has_pip =
        |python: &Path| cmd::succeeds(Command::new(python).args(["-m", "pip", "--version"]));
    let on_path = PathBuf::from("python3");
    if has_pip(&on_path) {
        return Ok(on_path);
    }
    eprintln!("xtask: `python3 -m pip` is not available; installing Debian's python3-pip");
    apt.install(&["python3-pip"])?;
    // Debian's pip belongs to Debian's Python, which may not be the first python3 on PATH
    // (pyenv, a virtualenv).
    let debian = PathBuf::from("/usr/bin/python3");
    [on_path, debian]
        .into_iter()
        .find(|p| has_pip(p))
        .context("python3-pip is installed but `python3 -m pip` still does not work")
}

/// `.cache/models/yolox_nano.onnx`: the shared copy when there is one, else the release asset.
fn model(repo: &Repo, apt: &mut Apt) -> Result<PathBuf> {
    let dest = repo.cache().join("models").join(MODEL_FILE);
    if fetch::has_sha256(&dest, MODEL_SHA256)? {
        return Ok(dest);
    }
    let shared = repo.shared().join("models").join(MODEL_FILE);
    if shared.is_file() {
        eprintln!("xtask: copying {}", shared.display());
        fetch::copy_verified(&shared, &dest, MODEL_SHA256)?;
    } else {
        eprintln!("xtask: downloading {MODEL_URL}");
        fetch::download_verified(apt, MODEL_URL, &dest, MODEL_SHA256)?;
    }
    Ok(dest)
}

/// `.cache/samples/vtest.avi`: the shared copy when there is one, else out of Debian's
/// opencv-doc package.
fn clip(repo: &Repo, apt: &mut Apt) -> Result<PathBuf> {
    let dest = repo.cache().join("samples").join(CLIP_FILE);
    if fetch::has_sha256(&dest, CLIP_SHA256)? {
        return Ok(dest);
    }
    let shared = repo.shared().join("samples").join("video").join(CLIP_FILE);
    if shared.is_file() {
        eprintln!("xtask: copying {}", shared.display());
        fetch::copy_verified(&shared, &dest, CLIP_SHA256)?;
    } else {
        clip_from_opencv_doc(repo, apt, &dest).context("get vtest.avi from opencv-doc")?;
    }
    Ok(dest)
}

fn clip_from_opencv_doc(repo: &Repo, apt: &mut Apt, dest: &Path) -> Result<()> {
    let work = repo.cache().join("tmp").join("opencv-doc");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("clear {}", work.display()))?;
    }
    fetch::create_dir(&work)?;
    apt.download("opencv-doc", &work)?;
    let deb = fs::read_dir(&work)
        .with_context(|| format!("list {}", work.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", work.display()))?;

    // Only the clip, not the whole package: `dpkg -x` would unpack ~270 MB of HTML.
    // The trailing `*` also matches a gzip-compressed copy, which some releases ship.
    let mut unpack = Command::new("dpkg-deb");
    unpack.arg("--fsys-tarfile").arg(&deb);
    let mut untar = Command::new("tar");
    untar
        .arg("-x")
        .arg("-C")
        .arg(&work)
        .arg("--wildcards")
        .arg(format!("./{CLIP_IN_DEB}*"));
    cmd::pipe(&mut unpack, &mut untar)
        .with_context(|| format!("extract {CLIP_IN_DEB} from {}", deb.display()))?;

    let plain = work.join(CLIP_IN_DEB);
    let gzipped = work.join(format!("{CLIP_IN_DEB}.gz"));
    if plain.is_file() {
        fetch::copy_verified(&plain, dest, CLIP_SHA256)?;
    } else if gzipped.is_file() {
        let tmp = fetch::temp_path(dest);
        let out = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        cmd::run(Command::new("gzip").arg("-dc").arg(&gzipped).stdout(out))
            .with_context(|| format!("decompress {}", gzipped.display()))?;
        fetch::verify_sha256(&tmp, CLIP_SHA256)?;
        fetch::commit(&tmp, dest)?;
    } else {
        bail!("{} does not contain {CLIP_IN_DEB}", deb.display());
    }
    // The .deb is ~95 MB and no longer needed once the clip is cached.
    if let Err(e) = fs::remove_dir_all(&work) {
        eprintln!("xtask: (ignored) could not remove {}: {e}", work.display());
    }
    Ok(())
}

/// Frames for `edge-agent bench`: the shared COCO samples when present (the detector's
/// reference was made on them); otherwise ten JPEG stills spread over the clip, in
/// `.cache/samples/frames`, where the bench looks next.
fn bench_frames(repo: &Repo, clip: &Path) -> Result<PathBuf> {
    let shared = repo.shared().join("samples").join("frames");
    if shared.is_dir() {
        return Ok(shared);
    }
    let dir = repo.cache().join("samples").join("frames");
    let done = dir.join("DONE");
    if done.is_file() {
        return Ok(dir);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    fetch::create_dir(&dir)?;
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-v", "error", "-y", "-i"])
        .arg(clip)
        .args([
            "-vf",
            "select=not(mod(n\\,80))",
            "-vsync",
            "vfr",
            "-frames:v",
            "10",
        ])
        .args(["-q:v", "2"])
        .arg(dir.join("vtest_%02d.jpg"));
    cmd::run(&mut ffmpeg).context("extract stills from the clip")?;
    // Written last, so an interrupted extraction is redone rather than half used.
    fetch::write_atomic(&done, b"")?;
    Ok(dir)
}

/// Programs later stages run as child processes, installed when missing.
fn debian_packages(apt: &mut Apt) -> Result<()> {
    let mut missing = Vec::new();
    if ffmpeg().is_none() {
        missing.push("ffmpeg");
    }
    if mosquitto().is_none() {
        missing.push("mosquitto");
    }
    // The dashboard's end-to-end tests (hub/tests/integration/dashboard_e2e.rs) drive Debian's Chromium
    // with Playwright; a CJK font so the Chinese UI renders in their screenshots.
    if !cmd::is_executable(Path::new(CHROMIUM)) {
        missing.push("chromium");
    }
    if !Path::new(CJK_FONT).is_file() {
        missing.push("fonts-wqy-microhei");
    }
    // Node.js comes with the machine; a bare Debian gets Debian's.
    if cmd::which("npm").is_none() {
        missing.push("npm");
    }
    // `systemd-analyze security --offline=yes` rates the service units in the tests
    // (xtask/tests/systemd_units.rs); a container image may lack it.
    if cmd::which("systemd-analyze").is_none() {
        missing.push("systemd");
    }
    if !missing.is_empty() {
        eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
        apt.install(&missing)?;
        if missing.contains(&"mosquitto") {
            quiet_mosquitto_service();
        }
    }
    let (ffmpeg, ffprobe) = ffmpeg().context("ffmpeg/ffprobe still not found on PATH")?;
    println!("ffmpeg: ok ({}, {})", ffmpeg.display(), ffprobe.display());
    let mosquitto = mosquitto().context("mosquitto still not found")?;
    println!("mosquitto: ok ({})", mosquitto.display());
    if !cmd::is_executable(Path::new(CHROMIUM)) {
        bail!("{CHROMIUM} still not found after installing the chromium package");
    }
    println!("chromium: ok ({CHROMIUM})");
    Ok(())
}

/// Where Debian's `chromium` package puts the browser the end-to-end tests launch.
const CHROMIUM: &str = "/usr/bin/chromium";
/// A file of Debian's `fonts-wqy-microhei`.
const CJK_FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";

/// `hub/e2e/node_modules`: Playwright (`playwright-core` only, which downloads no browser), as
/// pinned by `hub/e2e/package-lock.json`.
fn e2e_packages(repo: &Repo) -> Result<()> {
    let dir = repo.root().join("hub/e2e");
    let installed = dir.join("node_modules/playwright-core/package.json");
    if !installed.is_file() {
        eprintln!("xtask: installing the browser tests' npm packages (npm ci in hub/e2e)");
        let npm = cmd::which("npm").context(
            "npm not found on PATH (the machine's Node.js and npm run the browser tests)",
        )?;
        let mut ci = Command::new(npm);
        ci.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
        cmd::run(&mut ci).context("npm ci in hub/e2e")?;
    }
    println!(
        "e2e npm packages: ok ({})",
        repo.rel(&dir.join("node_modules"))
    );
    Ok(())
}

/// `.cache/<krate>/bin/<krate>` at exactly `version`, installed from crates.io (`--locked`)
/// when missing or another version. Not one on `PATH`: its version is not ours to pin.
pub(crate) fn cargo_tool(repo: &Repo, krate: &str, version: &str) -> Result<PathBuf> {
    let root = repo.cache().join(krate);
    let binary = root.join("bin").join(krate);
    let wanted = format!("{krate} {version}");
    let installed = || {
        Command::new(&binary)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == wanted)
    };
    if !installed() {
        eprintln!("xtask: installing {wanted} into {}", repo.rel(&root));
        let mut install = repo.cargo();
        // `--debug`: these tools only read manifests and run cargo, in seconds either way,
        // and a debug build installs in well under half the time of a release one
        // (cargo-deny 0.20.2 on two cores: 80 s against 204 s), which CI pays on every
        // cold run.
        install
            .args(["install", krate, "--locked", "--debug", "--version"])
            .arg(format!("={version}"))
            .arg("--root")
            .arg(&root);
        cmd::run(&mut install)?;
        if !installed() {
            bail!("{} does not report `{wanted}`", binary.display());
        }
    }
    println!("{wanted}: ok ({})", repo.rel(&binary));
    Ok(binary)
}

fn ffmpeg() -> Option<(PathBuf, PathBuf)> {
    Some((cmd::which("ffmpeg")?, cmd::which("ffprobe")?))
}

/// Debian puts the broker in /usr/sbin, which is not on a normal user's PATH.
pub(crate) fn mosquitto() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/sbin/mosquitto");
    if cmd::is_executable(&debian) {
        Some(debian)
    } else {
        cmd::which("mosquitto")
    }
}

/// Debian's mosquitto package enables a system broker on port 1883. Tests start their own
/// brokers on their own ports; a system broker would be an open port nobody asked for and
/// could hide a test that accidentally talks to 1883. Failures are ignored: containers often
/// have no init system, and then nothing was started in the first place.
fn quiet_mosquitto_service() {
    let systemd_running = Path::new("/run/systemd/system").exists();
    let has = |program| cmd::which(program).is_some();
    if systemd_running && has("systemctl") {
        apt::run_privileged_best_effort("systemctl", &["disable", "--now", "mosquitto"]);
    } else {
        // No systemd as init (typical container): the package may have started the SysV
        // script. `systemctl disable` still works offline and removes both the systemd and
        // the SysV start links, so a later boot with systemd does not start it either.
        if has("service") {
            apt::run_privileged_best_effort("service", &["mosquitto", "stop"]);
        }
        if has("systemctl") {
            apt::run_privileged_best_effort("systemctl", &["disable", "mosquitto"]);
        } else if has("update-rc.d") {
            apt::run_privileged_best_effort("update-rc.d", &["mosquitto", "disable"]);
        }
    }
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", 1883))
        && e.kind() == std::io::ErrorKind::AddrInUse
    {
        eprintln!(
            "xtask: warning: something still listens on port 1883 \
             (check `ss -ltnp | grep 1883`); tests use their own ports"
        );
    }
}
