//! `neural-style batch` end to end on the tiny random VGG-19: folder pairs and manifests,
//! sharding by the real Slurm and Kubernetes variables, skipping finished work, failure
//! isolation, the results file, the style cache, and identity with single runs.

mod common;

use common::data;
use common::images::{checker, gradient, stripes};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_neural-style");

/// Photos `a.png`, `b.jpg` and a corrupt `c.png`; styles `s1.png`, `s2.jpg`.
struct Inputs {
    dir: TempDir,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["photos", "paintings", "out"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let p = dir.path();
        gradient(80, 64).save(p.join("photos/a.png")).unwrap();
        checker(64, 80).save(p.join("photos/b.jpg")).unwrap();
        std::fs::write(
            p.join("photos/c.png"),
            b"\x89PNG\r\n\x1a\n not really a png",
        )
        .unwrap();
        std::fs::write(p.join("photos/notes.txt"), b"not an image").unwrap();
        stripes(72, 72).save(p.join("paintings/s1.png")).unwrap();
        checker(60, 52).save(p.join("paintings/s2.jpg")).unwrap();
        Inputs { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn outputs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Runs the binary with `args` and the environment `env` (Slurm variables of this process's
/// own scheduler, if any, are removed first).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for key in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
    ] {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The painting flags every test uses: tiny network, tiny size, few steps.
fn small(extra: &[&str]) -> Vec<String> {
    let weights = data("tiny_vgg.npz");
    let mut args: Vec<String> = [
        "--size",
        "32",
        "--iterations",
        "3",
        "--weights",
        weights.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn folder_batch(inp: &Inputs, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["batch", "--contents"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for p in [
        inp.path("photos"),
        "--styles".into(),
        inp.path("paintings"),
        "--output-dir".into(),
        inp.path("out"),
    ] {
        args.push(p.to_string_lossy().into_owned());
    }
    args.extend(small(extra));
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn results(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn file_name(v: &Value) -> String {
    Path::new(v["output"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn two_slurm_shards_paint_every_good_pair_once_and_isolate_the_corrupt_photo() {
    let inp = Inputs::new();
    let res = inp.path("results.jsonl");
    let args = folder_batch(&inp, &["--results", res.to_str().unwrap()]);
    let mut codes = Vec::new();
    for task in ["0", "1"] {
        let env = [
            ("SLURM_ARRAY_TASK_ID", task),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ];
        let out = run(&strs(&args), &env);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        codes.push(out.status.code());
        let last = stderr(&out).lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("painted "), "summary line: {last}");
    }
    let good =
        ["a__s1.png", "a__s2.jpg", "b__s1.png", "b__s2.jpg"].map(|n| n.replace(".jpg", ".png"));
    assert_eq!(inp.outputs(), good);
    // Every item exactly once over both shards; the corrupt photo failed, naming its file.
    let lines = results(&res);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &lines {
        seen.entry(file_name(l))
            .or_default()
            .push(l["status"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 6, "{lines:?}");
    assert!(seen.values().all(|s| s.len() == 1), "{seen:?}");
    assert_eq!(seen["c__s1.png"], ["failed"]);
    assert_eq!(seen["c__s2.png"], ["failed"]);
    for l in lines.iter().filter(|l| l["status"] == "failed") {
        assert!(l["error"].as_str().unwrap().contains("c.png"), "{l}");
    }
    for l in lines.iter().filter(|l| l["status"] == "ok") {
        assert!(l["evaluations"].as_u64().unwrap() >= 3, "{l}");
        assert!(l["losses"]["total"].as_f64().unwrap().is_finite(), "{l}");
    }
    // Sorted outputs a__s1, a__s2, b__s1, b__s2, c__s1, c__s2: shard 0 gets c__s1, shard 1
    // c__s2, so both report a failure.
    assert_eq!(codes, [Some(1), Some(1)]);

    // A re-run skips what is done and retries only the failures.
    let t = Instant::now();
    let out = run(&strs(&args), &[]);
    let log = stderr(&out);
    assert!(log.contains("2 to paint, 4 already done"), "{log}");
    assert!(log.ends_with(&format!("{}\n", log.lines().last().unwrap())));
    assert!(
        log.lines()
            .last()
            .unwrap()
            .starts_with("painted 0, skipped 4, failed 2"),
        "{log}"
    );
    eprintln!(
        "re-run with 4 skipped, 2 retried: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // With the corrupt photo gone nothing is left to do: the network is not even loaded.
    std::fs::remove_file(inp.path("photos/c.png")).unwrap();
    let mut args = args.clone();
    let w = args.iter().position(|a| a == "--weights").unwrap();
    args[w + 1] = "/nonexistent/weights.npz".into();
    let t = Instant::now();
    let out = run(&strs(&args), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("painted 0, skipped 4, failed 0"));
    eprintln!(
        "re-run of a finished batch: {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let skipped = results(&res)
        .iter()
        .filter(|l| l["status"] == "skipped")
        .count();
    assert_eq!(skipped, 8);
}

#[test]
fn kubernetes_index_and_explicit_shards_agree() {
    let inp = Inputs::new();
    let json = |out: &Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("output").is_some())
            .map(|v| file_name(&v))
            .collect()
    };
    let mut by_index = Vec::new();
    for i in ["0", "1", "2"] {
        let args = folder_batch(&inp, &["--shards", "3", "--json"]);
        let out = run(&strs(&args), &[("JOB_COMPLETION_INDEX", i)]);
        by_index.push(json(&out));
    }
    std::fs::remove_dir_all(inp.path("out")).unwrap();
    for (i, want) in by_index.iter().enumerate() {
        let shard = format!("{i}/3");
        let args = folder_batch(&inp, &["--shard", &shard, "--json"]);
        // --shard wins over the scheduler's variables.
        let out = run(
            &strs(&args),
            &[
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "9"),
            ],
        );
        assert_eq!(&json(&out), want, "shard {shard}");
        assert_eq!(want.len(), 2, "6 items in 3 shards: {want:?}");
    }
    let all: std::collections::BTreeSet<&String> = by_index.iter().flatten().collect();
    assert_eq!(all.len(), 6);
}

#[test]
fn bad_shard_settings_are_one_line_errors() {
    let inp = Inputs::new();
    for (extra, env, culprit) in [
        (vec!["--shard", "2/2"], vec![], "--shard"),
        (vec!["--shard", "x"], vec![], "--shard"),
        (vec!["--shards", "2"], vec![], "JOB_COMPLETION_INDEX"),
        (
            vec!["--shards", "2"],
            vec![("JOB_COMPLETION_INDEX", "2")],
            "JOB_COMPLETION_INDEX=2",
        ),
        (
            vec![],
            vec![("SLURM_ARRAY_TASK_ID", "3")],
            "SLURM_ARRAY_TASK_COUNT",
        ),
        (
            vec![],
            vec![
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
            "SLURM_ARRAY_TASK_ID=4",
        ),
    ] {
        let out = run(&strs(&folder_batch(&inp, &extra)), &env);
        let err = stderr(&out);
        assert!(!out.status.success());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: ") && err.contains(culprit),
            "{culprit}: {err}"
        );
    }
    assert!(inp.outputs().is_empty());
}

#[test]
fn a_batch_item_is_bitwise_the_single_run_painting() {
    let inp = Inputs::new();
    // Two styles blended, two stages, Adam from noise: most of a job's settings in play.
    let manifest = inp.path("m.csv");
    std::fs::write(
        &manifest,
        "content,style,style_blend,scales,optimizer,init,output\n\
         photos/a.png,paintings/s1.png;paintings/s2.jpg,0.7;0.3,24,adam,noise,blend.png\n",
    )
    .unwrap();
    let mut args: Vec<String> = vec!["batch".into(), "--manifest".into()];
    args.push(manifest.to_string_lossy().into());
    args.push("--output-dir".into());
    args.push(inp.path("out").to_string_lossy().into());
    args.extend(small(&["--original-colors"]));
    let out = run(&strs(&args), &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let single = inp.path("single.png");
    let mut args: Vec<String> = vec![
        "--content".into(),
        inp.path("photos/a.png").to_string_lossy().into(),
        "--style".into(),
        inp.path("paintings/s1.png").to_string_lossy().into(),
        "--style".into(),
        inp.path("paintings/s2.jpg").to_string_lossy().into(),
        "--style-blend".into(),
        "0.7,0.3".into(),
        "--scales".into(),
        "24".into(),
        "--optimizer".into(),
        "adam".into(),
        "--init".into(),
        "noise".into(),
        "--output".into(),
        single.to_string_lossy().into(),
    ];
    args.extend(small(&["--original-colors"]));
    let out = run(&strs(&args), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read(inp.path("out/blend.png")).unwrap() == std::fs::read(&single).unwrap(),
        "batch and single run differ"
    );
}

#[test]
fn histogram_colors_give_each_photo_its_own_style_targets() {
    // Two photos in one style: the matched style depends on the photo, so the second item must
    // not reuse the first one's targets (in memory or in the cache folder).
    let inp = Inputs::new();
    std::fs::remove_file(inp.path("photos/c.png")).unwrap();
    std::fs::remove_file(inp.path("paintings/s2.jpg")).unwrap();
    let cache = inp.path("cache");
    let args = folder_batch(
        &inp,
        &[
            "--original-colors",
            "histogram",
            "--style-cache",
            cache.to_str().unwrap(),
        ],
    );
    let out = run(&strs(&args), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(inp.outputs(), ["a__s1.png", "b__s1.png"]);
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        2,
        "one entry per photo"
    );
    for photo in ["a.png", "b.jpg"] {
        let single = inp.path(&format!("single-{photo}.png"));
        let mut args: Vec<String> = vec![
            "--content".into(),
            inp.path(&format!("photos/{photo}"))
                .to_string_lossy()
                .into(),
            "--style".into(),
            inp.path("paintings/s1.png").to_string_lossy().into(),
            "--output".into(),
            single.to_string_lossy().into(),
        ];
        args.extend(small(&["--original-colors", "histogram"]));
        let out = run(&strs(&args), &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let stem = photo.split('.').next().unwrap();
        assert!(
            std::fs::read(inp.path(&format!("out/{stem}__s1.png"))).unwrap()
                == std::fs::read(&single).unwrap(),
            "the batch item of {photo} differs from its single run"
        );
    }
}

#[test]
fn several_items_at_once_paint_the_same_pictures() {
    let inp = Inputs::new();
    std::fs::remove_file(inp.path("photos/c.png")).unwrap();
    let one = folder_batch(&inp, &["--jobs", "1", "--threads", "2"]);
    assert!(run(&strs(&one), &[]).status.success());
    let read = |inp: &Inputs| -> Vec<Vec<u8>> {
        inp.outputs()
            .iter()
            .map(|n| std::fs::read(inp.path("out").join(n)).unwrap())
            .collect()
    };
    let first = read(&inp);
    std::fs::remove_dir_all(inp.path("out")).unwrap();
    let three = folder_batch(&inp, &["--jobs", "3", "--threads", "2"]);
    let out = run(&strs(&three), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(first.len(), 4);
    assert!(read(&inp) == first, "--jobs 3 painted different pictures");
}

#[test]
fn manifest_bad_rows_are_all_reported_before_any_work() {
    let inp = Inputs::new();
    let manifest = inp.path("m.jsonl");
    std::fs::write(
        &manifest,
        "{\"content\":\"photos/a.png\",\"style\":\"paintings/s1.png\"}\n\
         {\"content\":\"photos/zz.png\",\"style\":\"paintings/s1.png\"}\n\
         {\"content\":\"photos/b.jpg\",\"style\":\"paintings/s1.png\",\"style_weight\":-1}\n",
    )
    .unwrap();
    let mut args: Vec<String> = vec!["batch".into(), "--manifest".into()];
    args.push(manifest.to_string_lossy().into());
    args.push("--output-dir".into());
    args.push(inp.path("out").to_string_lossy().into());
    args.extend(small(&[]));
    let out = run(&strs(&args), &[]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("2 bad row(s)"), "{err}");
    assert!(err.contains("line 2: ") && err.contains("zz.png"), "{err}");
    assert!(
        err.contains("line 3: ") && err.contains("style weight"),
        "{err}"
    );
    assert!(
        inp.outputs().is_empty(),
        "no work before the rows are fixed"
    );
}

#[test]
fn the_style_cache_is_used_across_runs_and_a_damaged_entry_recomputed() {
    let inp = Inputs::new();
    std::fs::remove_file(inp.path("photos/c.png")).unwrap();
    let cache = inp.path("cache");
    let res = inp.path("r.jsonl");
    let args = folder_batch(
        &inp,
        &[
            "--style-cache",
            cache.to_str().unwrap(),
            "--results",
            res.to_str().unwrap(),
            "--overwrite",
        ],
    );
    let read = |inp: &Inputs| -> Vec<Vec<u8>> {
        inp.outputs()
            .iter()
            .map(|n| std::fs::read(inp.path("out").join(n)).unwrap())
            .collect()
    };
    assert!(run(&strs(&args), &[]).status.success());
    let first = read(&inp);
    // Two styles at one size: two entries.
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    // Damage one entry: the next run warns, recomputes it and paints the same pictures.
    let bytes = std::fs::read(&entries[0]).unwrap();
    std::fs::write(&entries[0], &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&strs(&args), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("warning: ") && l.contains("style cache entry"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(read(&inp) == first);
    assert_eq!(std::fs::read(&entries[0]).unwrap(), bytes, "entry repaired");
    // A changed style file is a new key, not a stale hit.
    stripes(70, 72).save(inp.path("paintings/s1.png")).unwrap();
    assert!(run(&strs(&args), &[]).status.success());
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 3);
}
