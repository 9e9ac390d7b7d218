//! `cargo xtask package [--out DIR] [--install-test]`: Debian packages of the two daemons.
//!
//! Each package is staged as a directory tree and handed to `dpkg-deb --root-owner-group`, so
//! no fakeroot and no debian/ source tree are needed: what goes where is the table in
//! [`agent_files`] and [`hub_files`], and the maintainer scripts are the files in
//! `packaging/<package>/`. Config files are dpkg conffiles (an upgrade keeps the admin's
//! edits); state lives under `/var/lib/<package>`, which only `purge` deletes.
//!
//! `--install-test` then makes a fresh Debian 12 root with debootstrap (as root; the base
//! system is cached in `.cache/package-test/`), installs both packages into it with dpkg, and
//! checks that `edge-agent validate` and `hub validate` pass on the installed example configs,
//! that `edge-agent detect` finds people in a sample frame with the installed model and ONNX
//! Runtime, that an upgrade keeps an edited config and the state, and that remove keeps the
//! state while purge deletes it.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{Repo, agent, cmd, setup};

/// The Debian release the packages are built for and tested on.
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// A frame of ../shared/samples/frames with several people in it.
const SAMPLE_FRAME: &str = "000000001000.jpg";
/// The detector's default score threshold (models/yolox_nano.toml).
const SCORE: f64 = 0.3;

/// One file of a package: where it comes from, where it goes, its mode.
#[derive(Debug)]
struct Item {
    src: PathBuf,
    /// Relative to the package root.
    dest: String,
    mode: u32,
}

/// One package to build.
#[derive(Debug)]
struct Package {
    name: &'static str,
    summary: &'static str,
    description: &'static str,
    depends: Vec<String>,
    recommends: &'static str,
    items: Vec<Item>,
    /// Files under /etc that dpkg keeps when the admin changed them.
    conffiles: Vec<String>,
}

pub fn command(repo: &Repo, args: &[String]) -> Result<()> {
    let mut out = repo.target_dir().join("debian");
    let mut install_test = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(it.next().context("--out needs a directory")?),
            "--install-test" => install_test = true,
            other => bail!(
                "package: unknown argument `{other}`; usage: package [--out DIR] [--install-test]"
            ),
        }
    }
    let debs = build(repo, &out)?;
    for d in &debs {
        println!("package: {}", repo.rel(d));
    }
    if install_test {
        install_test_in_fresh_root(repo, &debs)?;
        println!("package install test: ok");
    }
    Ok(())
}

/// Builds both packages into `out`; returns the `.deb` paths (agent, hub).
fn build(repo: &Repo, out: &Path) -> Result<Vec<PathBuf>> {
    let assets = setup::run(repo).context("set up")?;
    let agent_bin = agent::build_release(repo)?;
    let hub_bin = agent::build_release_hub(repo)?;
    let version = workspace_version(repo)?;
    let arch = cmd::stdout(Command::new("dpkg").arg("--print-architecture"))?;
    fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let staging = repo.target_dir().join("debian-staging");
    let mut debs = Vec::new();
    for pkg in [
        agent_package(repo, &agent_bin, &assets.ort_lib)?,
        hub_package(repo, &hub_bin)?,
    ] {
        let root = staging.join(pkg.name);
        stage(repo, &pkg, &root, &version, &arch)?;
        let deb = out.join(format!("{}_{version}_{arch}.deb", pkg.name));
        cmd::run(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zxz", "--build"])
                .arg(&root)
                .arg(&deb),
        )
        .with_context(|| format!("build {}", deb.display()))?;
        debs.push(deb);
    }
    Ok(debs)
}

fn agent_package(repo: &Repo, binary: &Path, ort_lib: &Path) -> Result<Package> {
    let p = |rel: &str| repo.root().join(rel);
    let model = repo.cache().join("models").join("yolox_nano.onnx");
    // ONNX Runtime is C++: the library needs the C++ runtime besides glibc.
    let mut depends = vec![glibc_dependency(&[binary, ort_lib])?];
    depends.extend(["libstdc++6".to_string(), "libgcc-s1".to_string()]);
    Ok(Package {
        name: "edge-agent",
        summary: "Sharp Eyes edge alerting agent",
        description: "Reads cameras (RTSP through ffmpeg, HTTP snapshots, pushed JPEGs) and \
                      RFID tag readers, detects people and vehicles with ONNX Runtime, applies \
                      alert rules and delivers alerts to the hub over MQTT from a durable \
                      outbox. Ships ONNX Runtime and the YOLOX-Nano model.",
        depends,
        // ffmpeg decodes RTSP and file sources; boxes with HTTP or pushed JPEG cameras only
        // run without it.
        recommends: "ffmpeg",
        items: vec![
            item(binary, "usr/bin/edge-agent", 0o755),
            item(ort_lib, "usr/lib/edge-agent/libonnxruntime.so", 0o644),
            item(&model, "usr/share/edge-agent/models/yolox_nano.onnx", 0o644),
            item(
                &p("models/yolox_nano.toml"),
                "usr/share/edge-agent/models/yolox_nano.toml",
                0o644,
            ),
            item(
                &p("models/coco_classes.txt"),
                "usr/share/edge-agent/models/coco_classes.txt",
                0o644,
            ),
            item(
                &p("systemd/edge-agent.service"),
                "lib/systemd/system/edge-agent.service",
                0o644,
            ),
            item(
                &p("packaging/edge-agent/agent.toml"),
                "etc/edge-agent/agent.toml",
                0o640,
            ),
            item(&p("README.md"), "usr/share/doc/edge-agent/README.md", 0o644),
            item(
                &p("configs/README.md"),
                "usr/share/doc/edge-agent/configs.md",
                0o644,
            ),
        ],
        conffiles: vec!["/etc/edge-agent/agent.toml".to_string()],
    })
}

fn hub_package(repo: &Repo, binary: &Path) -> Result<Package> {
    let p = |rel: &str| repo.root().join(rel);
    let mut items = vec![
        item(binary, "usr/bin/hub", 0o755),
        item(
            &p("systemd/hub.service"),
            "lib/systemd/system/hub.service",
            0o644,
        ),
        item(&p("packaging/hub/hub.toml"), "etc/hub/hub.toml", 0o644),
        item(
            &p("packaging/hub/credentials.toml"),
            "etc/hub/credentials.toml",
            0o640,
        ),
        item(&p("packaging/hub/users.toml"), "etc/hub/users.toml", 0o640),
        item(
            &p("configs/hub/wuding.geojson"),
            "etc/hub/grid.geojson",
            0o644,
        ),
        item(&p("README.md"), "usr/share/doc/hub/README.md", 0o644),
        item(
            &p("configs/hub/README.md"),
            "usr/share/doc/hub/example.md",
            0o644,
        ),
    ];
    for file in ["people.csv", "duty.csv", "overrides.csv", "backups.csv"] {
        items.push(Item {
            src: p(&format!("configs/hub/roster/{file}")),
            dest: format!("etc/hub/roster/{file}"),
            mode: 0o644,
        });
    }
    // Everything under /etc is the admin's once installed.
    let conffiles = items
        .iter()
        .filter(|i| i.dest.starts_with("etc/"))
        .map(|i| format!("/{}", i.dest))
        .collect();
    Ok(Package {
        name: "hub",
        summary: "Sharp Eyes hub: alerts to the grid member on duty",
        description: "Receives alerts from edge agents through its MQTT gateway, files each \
                      as a case in its grid cell, pushes it to the grid member on duty and \
                      escalates up the administrative levels when nobody acknowledges; \
                      serves the operators' dashboard and the phones' pages.",
        depends: vec![glibc_dependency(&[binary])?],
        recommends: "",
        items,
        conffiles,
    })
}

fn item(src: &Path, dest: &str, mode: u32) -> Item {
    Item {
        src: src.to_path_buf(),
        dest: dest.to_string(),
        mode,
    }
}

/// Lays out `pkg` under `root` (emptied first) with its DEBIAN/ control files.
fn stage(repo: &Repo, pkg: &Package, root: &Path, version: &str, arch: &str) -> Result<()> {
    if root.exists() {
        fs::remove_dir_all(root).with_context(|| format!("empty {}", root.display()))?;
    }
    let mut installed_bytes = 0u64;
    for it in &pkg.items {
        let dest = root.join(&it.dest);
        let dir = dest.parent().context("item without a directory")?;
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        fs::copy(&it.src, &dest)
            .with_context(|| format!("copy {} to {}", it.src.display(), dest.display()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(it.mode))
            .with_context(|| format!("chmod {}", dest.display()))?;
        if it.dest.starts_with("usr/bin/") || it.dest.ends_with(".so") {
            // Debug info doubles the binaries; a box's disk is small.
            cmd::run(Command::new("strip").arg("--strip-debug").arg(&dest))?;
        }
        installed_bytes += fs::metadata(&dest)?.len();
    }
    let control_dir = root.join("DEBIAN");
    fs::create_dir_all(&control_dir)?;
    let mut control = format!(
        "Package: {}\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: Sharp Eyes edge team <edge@sharp-eyes.invalid>\n\
         Installed-Size: {}\nDepends: {}\n",
        pkg.name,
        installed_bytes.div_ceil(1024),
        pkg.depends.join(", "),
    );
    if !pkg.recommends.is_empty() {
        control.push_str(&format!("Recommends: {}\n", pkg.recommends));
    }
    control.push_str(&format!(
        "Section: net\nPriority: optional\nDescription: {}\n{}\n",
        pkg.summary,
        fold(pkg.description)
    ));
    write(&control_dir.join("control"), &control, 0o644)?;
    let conffiles: String = pkg.conffiles.iter().map(|c| format!("{c}\n")).collect();
    write(&control_dir.join("conffiles"), &conffiles, 0o644)?;
    for script in ["postinst", "prerm", "postrm"] {
        let src = repo.root().join("packaging").join(pkg.name).join(script);
        let text = fs::read_to_string(&src).with_context(|| format!("read {}", src.display()))?;
        write(&control_dir.join(script), &text, 0o755)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// A control file's extended description: lines of at most 72 columns, each indented by one
/// space.
fn fold(text: &str) -> String {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 72 {
            lines.push(format!(" {line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!(" {line}"));
    }
    lines.join("\n")
}

/// `libc6 (>= X)` for the newest `GLIBC_X` symbol version the files reference, so the package
/// refuses an older system instead of failing at start with a loader error.
fn glibc_dependency(files: &[&Path]) -> Result<String> {
    let mut newest: Option<(u32, u32)> = None;
    for f in files {
        let dump = cmd::stdout(Command::new("objdump").arg("-T").arg(f))
            .with_context(|| format!("read the dynamic symbols of {}", f.display()))?;
        for v in dump.split("GLIBC_").skip(1) {
            let ver: String = v
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = ver.split('.').filter_map(|p| p.parse::<u32>().ok());
            if let (Some(a), Some(b)) = (parts.next(), parts.next()) {
                newest = newest.max(Some((a, b)));
            }
        }
    }
    let (a, b) = newest.context("no GLIBC symbol versions found; is this a glibc binary?")?;
    Ok(format!("libc6 (>= {a}.{b})"))
}

fn workspace_version(repo: &Repo) -> Result<String> {
    let path = repo.root().join("Cargo.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let after = text
        .split("[workspace.package]")
        .nth(1)
        .context("Cargo.toml has no [workspace.package]")?;
    let line = after
        .lines()
        .find(|l| l.trim_start().starts_with("version"))
        .context("[workspace.package] has no version")?;
    let version = line
        .split('"')
        .nth(1)
        .context("[workspace.package] version is not a quoted string")?;
    Ok(version.to_string())
}

/// People at or above the default score in `file`'s entry of a detect output or the reference.
fn people(json: &str, file: &str) -> Result<usize> {
    let v: serde_json::Value = serde_json::from_str(json).context("not JSON")?;
    let detections = v
        .get(file)
        .and_then(|f| f.get("detections"))
        .and_then(|d| d.as_array())
        .with_context(|| format!("no `{file}.detections` list"))?;
    Ok(detections
        .iter()
        .filter(|d| d.get("label").and_then(|l| l.as_str()) == Some("person"))
        .filter(|d| {
            d.get("score")
                .and_then(|s| s.as_f64())
                .is_some_and(|s| s >= SCORE)
        })
        .count())
}

// ---- install test in a fresh Debian root ----------------------------------------------------

/// A chroot, unmounted and deleted when dropped.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn run(&self, script: &str) -> Result<String> {
        cmd::stdout(
            Command::new("chroot")
                .arg(&self.dir)
                .args(["/bin/sh", "-ec", script])
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("LC_ALL", "C.UTF-8"),
        )
        .with_context(|| format!("in the Debian root: {script}"))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.join("proc")).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn install_test_in_fresh_root(repo: &Repo, debs: &[PathBuf]) -> Result<()> {
    if !crate::apt::is_root() {
        bail!("the install test makes a Debian root with debootstrap and chroot: run it as root");
    }
    if cmd::which("debootstrap").is_none() {
        crate::apt::Apt::default().install(&["debootstrap"])?;
    }
    let cache = repo.cache().join("package-test");
    fs::create_dir_all(&cache)?;
    // debootstrap's own tarball of the base system's .debs: a second run downloads nothing.
    let tarball = cache.join(format!("{SUITE}-minbase.tgz"));
    if !tarball.exists() {
        let partial = cache.join(format!("{SUITE}-minbase.tgz.partial"));
        cmd::run(
            Command::new("debootstrap")
                .args([
                    "--variant=minbase",
                    &format!("--make-tarball={}", partial.display()),
                ])
                .args([
                    SUITE,
                    &cache.join("tarball-work").display().to_string(),
                    MIRROR,
                ]),
        )
        .context("download the Debian base system")?;
        fs::rename(&partial, &tarball)?;
        let _ = fs::remove_dir_all(cache.join("tarball-work"));
    }
    let root = Root {
        dir: repo.target_dir().join("package-test-root"),
    };
    if root.dir.exists() {
        let _ = Command::new("umount").arg(root.dir.join("proc")).status();
        fs::remove_dir_all(&root.dir)?;
    }
    cmd::run(
        Command::new("debootstrap")
            .args([
                "--variant=minbase",
                &format!("--unpack-tarball={}", tarball.display()),
            ])
            .args([SUITE, &root.dir.display().to_string(), MIRROR]),
    )
    .context("make a fresh Debian root")?;
    cmd::run(
        Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.dir.join("proc")),
    )?;

    let pkgs = root.dir.join("tmp/pkgs");
    fs::create_dir_all(&pkgs)?;
    for d in debs {
        fs::copy(d, pkgs.join(d.file_name().context("deb without a name")?))?;
    }
    let sample = repo.shared().join("samples/frames").join(SAMPLE_FRAME);
    fs::copy(&sample, root.dir.join("tmp/frame.jpg"))
        .with_context(|| format!("copy the sample frame {}", sample.display()))?;

    println!("install test: dpkg -i both packages");
    root.run("dpkg -i /tmp/pkgs/edge-agent_*.deb /tmp/pkgs/hub_*.deb")?;
    check_installed(repo, &root)?;
    check_upgrade_remove_purge(&root)?;
    Ok(())
}

fn check_installed(repo: &Repo, root: &Root) -> Result<()> {
    let v = root.run("edge-agent validate --config /etc/edge-agent/agent.toml")?;
    println!("install test: edge-agent validate: {v}");
    let v = root.run("hub validate -c /etc/hub/hub.toml")?;
    println!("install test: hub validate: {v}");
    // The model and ONNX Runtime as installed, found by default: no workspace, no
    // ORT_DYLIB_PATH, no --model.
    let d = root.run("cd / && edge-agent detect /tmp/frame.jpg")?;
    let found =
        people(&d, "frame.jpg").with_context(|| format!("edge-agent detect printed: {d}"))?;
    let reference_path = repo.shared().join("models/yolox_nano.reference.json");
    let reference = fs::read_to_string(&reference_path)
        .with_context(|| format!("read {}", reference_path.display()))?;
    let expected = people(&reference, SAMPLE_FRAME)?;
    // The packaged ONNX Runtime is the one the reference was checked with; allow one box of
    // difference at the score threshold rather than demanding bit-equal scores.
    if found == 0 || found.abs_diff(expected) > 1 {
        bail!(
            "edge-agent detect with the installed model found {found} people in \
             {SAMPLE_FRAME}; the reference has {expected}: {d}"
        );
    }
    println!(
        "install test: edge-agent detect: {found} people in {SAMPLE_FRAME} (reference {expected})"
    );
    let modes = root.run(
        "stat -c '%n %a %U:%G' /etc/edge-agent/agent.toml /var/lib/edge-agent \
         /etc/hub/signing.key /etc/hub/credentials.toml /var/lib/hub",
    )?;
    for (want, line) in [
        "/etc/edge-agent/agent.toml 640 root:edge-agent",
        "/var/lib/edge-agent 700 edge-agent:edge-agent",
        "/etc/hub/signing.key 600 hub:hub",
        "/etc/hub/credentials.toml 640 root:hub",
        "/var/lib/hub 700 hub:hub",
    ]
    .iter()
    .zip(modes.lines())
    {
        if want != &line {
            bail!("installed file: want `{want}`, got `{line}`");
        }
    }
    println!("install test: users, modes and state directories as intended");
    Ok(())
}

fn check_upgrade_remove_purge(root: &Root) -> Result<()> {
    // An edited config and some state, then the same packages again (an upgrade as dpkg
    // sees it): both must survive, and the signing key must not be replaced.
    root.run(
        "sed -i 's/^site = .*/site = \"wd-test-042\"/' /etc/edge-agent/agent.toml && \
         echo kept > /var/lib/edge-agent/marker && echo kept > /var/lib/hub/marker && \
         sha256sum /etc/hub/signing.key > /tmp/key.sum",
    )?;
    root.run(
        "dpkg --force-confold -i /tmp/pkgs/edge-agent_*.deb /tmp/pkgs/hub_*.deb && \
         grep -q '^site = \"wd-test-042\"' /etc/edge-agent/agent.toml && \
         test -f /var/lib/edge-agent/marker && test -f /var/lib/hub/marker && \
         sha256sum -c /tmp/key.sum",
    )
    .context("reinstall (upgrade) kept config, state and key")?;
    println!("install test: upgrade keeps the edited config, the state and the signing key");
    root.run(
        "dpkg -r edge-agent hub && test -f /var/lib/edge-agent/marker && \
         test -f /var/lib/hub/marker && test ! -e /usr/bin/edge-agent",
    )
    .context("remove keeps the state")?;
    root.run(
        "dpkg -P edge-agent hub && test ! -e /var/lib/edge-agent && test ! -e /var/lib/hub && \
         test ! -e /etc/edge-agent/agent.toml",
    )
    .context("purge deletes state and config")?;
    println!("install test: remove keeps the state, purge deletes it");
    Ok(())
}
