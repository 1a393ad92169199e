//! The list of paintings of a batch: every (content, style) pair of two folders, or the rows of
//! a manifest (CSV with a header row, or JSON lines), each row a [`Job`] made of the batch's
//! settings and the row's overrides. Every problem is found before any work starts, all of
//! them at once, each with its line number.

use crate::error::{Error, Result};
use crate::job::{InitSpec, Job};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File extensions taken as images when listing a folder.
pub const IMAGE_EXTENSIONS: [&str; 11] = [
    "jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp", "ppm", "pnm", "tga",
];

/// The default output name of a pair.
pub const DEFAULT_NAME: &str = "{content}__{style}.png";

/// Images directly in `dir` (not in subfolders), sorted by path.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut images = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image && path.is_file() {
            images.push(path);
        }
    }
    if images.is_empty() {
        return Err(Error::Config(format!(
            "{}: no images (looked for {})",
            dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    images.sort();
    Ok(images)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Fills a `--name` template: `{content}` and `{style}` are file stems (several styles joined
/// with `+`), `{size}` the long side. Any other `{...}` is an error.
pub fn output_name(template: &str, job: &Job) -> Result<String> {
    let styles: Vec<String> = job.styles.iter().map(|s| stem(s)).collect();
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| Error::Config(format!("--name '{template}': unclosed '{{'")))?
            + open;
        match &rest[open + 1..close] {
            "content" => out.push_str(&stem(&job.content)),
            "style" => out.push_str(&styles.join("+")),
            "size" => out.push_str(&job.size.to_string()),
            other => {
                return Err(Error::Config(format!(
                    "--name '{template}': unknown placeholder {{{other}}} (use {{content}}, {{style}}, {{size}})"
                )))
            }
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    if out.is_empty() || out.ends_with('/') {
        return Err(Error::Config(format!(
            "--name '{template}' gives no file name"
        )));
    }
    Ok(out)
}

/// Every (content, style) pair of two folders, with `base`'s settings, named by `template`
/// inside `output_dir`.
pub fn pairs(
    contents: &Path,
    styles: &Path,
    output_dir: &Path,
    template: &str,
    base: &Job,
) -> Result<Vec<Job>> {
    let contents = list_images(contents)?;
    let styles = list_images(styles)?;
    let mut jobs = Vec::new();
    for c in &contents {
        for s in &styles {
            let mut job = base.clone();
            job.content = c.clone();
            job.styles = vec![s.clone()];
            job.style_blend = None;
            job.output = output_dir.join(output_name(template, &job)?);
            job.validate()?;
            jobs.push(job);
        }
    }
    finish(jobs)
}

/// Sorts by output and refuses two items with one output.
fn finish(mut jobs: Vec<Job>) -> Result<Vec<Job>> {
    jobs.sort_by(|a, b| a.output.cmp(&b.output));
    for pair in jobs.windows(2) {
        if pair[0].output == pair[1].output {
            return Err(Error::Config(format!(
                "two items would write {} ({} and {}); set distinct outputs or a --name with {{content}} and {{style}}",
                pair[0].output.display(),
                pair[0].content.display(),
                pair[1].content.display()
            )));
        }
    }
    Ok(jobs)
}

/// One manifest row before it becomes a job: its line and its cells.
struct Row {
    line: usize,
    cells: BTreeMap<String, Value>,
}

/// Reads the rows of a CSV (by extension `.csv`, or anything not starting with `{`) or
/// JSON-lines manifest.
fn rows(path: &Path, text: &str) -> std::result::Result<Vec<Row>, Vec<String>> {
    let json = match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "ndjson" | "json") => true,
        Some("csv") => false,
        _ => text.trim_start().starts_with('{'),
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    if json {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Map<String, Value>>(line) {
                Ok(obj) => rows.push(Row {
                    line: i + 1,
                    cells: obj.into_iter().collect(),
                }),
                Err(e) => errors.push(format!("line {}: not a JSON object ({e})", i + 1)),
            }
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let header: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(|s| s.to_string()).collect(),
            Err(e) => return Err(vec![format!("header: {e}")]),
        };
        for record in reader.records() {
            match record {
                Ok(r) => {
                    let line = r.position().map_or(0, |p| p.line() as usize);
                    let cells = header
                        .iter()
                        .zip(r.iter())
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
                        .collect();
                    rows.push(Row { line, cells });
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    errors.push(format!("line {line}: {e}"));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// A list cell: a JSON array, or text split at `;` (and `,`, for numbers).
fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::String(s) => s
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.into()))
            .collect(),
        other => vec![other.clone()],
    }
}

/// A CSV cell (always text) as the JSON type the job's field has (`like`); JSON-lines values
/// are taken as they are.
fn typed(value: &Value, like: &Value) -> Value {
    let Value::String(text) = value else {
        return value.clone();
    };
    match like {
        Value::Number(_) | Value::Null => serde_json::from_str::<serde_json::Number>(text)
            .map(Value::Number)
            .unwrap_or_else(|_| value.clone()),
        Value::Bool(_) => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => value.clone(),
        },
        Value::Array(_) => {
            Value::Array(list(value).iter().map(|v| typed(v, &Value::Null)).collect())
        }
        _ => value.clone(),
    }
}

/// Resolves a path of a manifest cell against the manifest's folder.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.into()
    } else {
        base.join(p)
    }
}

fn row_job(
    row: &Row,
    base: &Job,
    dir: &Path,
    output_dir: &Path,
    template: &str,
) -> Result<Job, String> {
    let mut fields = match serde_json::to_value(base).expect("a job serialises") {
        Value::Object(m) => m,
        _ => unreachable!("a job serialises to an object"),
    };
    let text = |k: &str| -> Result<Option<String>, String> {
        match row.cells.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("column '{k}': expected text, got {other}")),
        }
    };
    let content = text("content")?.ok_or("no 'content'")?;
    fields.insert(
        "content".into(),
        Value::String(resolve(dir, &content).to_string_lossy().into()),
    );
    let styles = row
        .cells
        .get("style")
        .or_else(|| row.cells.get("styles"))
        .ok_or("no 'style'")?;
    let styles: Vec<Value> = list(styles)
        .iter()
        .map(|s| match s {
            Value::String(s) => Ok(Value::String(resolve(dir, s).to_string_lossy().into())),
            other => Err(format!("column 'style': expected paths, got {other}")),
        })
        .collect::<Result<_, String>>()?;
    fields.insert("styles".into(), Value::Array(styles));
    let masks = row.cells.get("style_mask").or(row.cells.get("style_masks"));
    if let Some(masks) = masks.filter(|v| !v.is_null()) {
        let masks: Vec<Value> = list(masks)
            .iter()
            .map(|m| match m {
                Value::String(s) if s == "none" => Ok(m.clone()),
                Value::String(s) => Ok(Value::String(resolve(dir, s).to_string_lossy().into())),
                other => Err(format!(
                    "column 'style_mask': expected paths or none, got {other}"
                )),
            })
            .collect::<Result<_, String>>()?;
        fields.insert("style_masks".into(), Value::Array(masks));
    }
    if let Some(mask) = text("content_mask")? {
        fields.insert(
            "content_mask".into(),
            Value::String(resolve(dir, &mask).to_string_lossy().into()),
        );
    }
    for (key, value) in &row.cells {
        if matches!(
            key.as_str(),
            "content"
                | "style"
                | "styles"
                | "style_mask"
                | "style_masks"
                | "content_mask"
                | "output"
                | "preset"
        ) {
            continue;
        }
        let like = fields
            .get(key)
            .cloned()
            .ok_or_else(|| format!("unknown column '{key}' (columns are the painting options, e.g. size, style_weight)"))?;
        let value = if key == "style_blend" {
            Value::Array(list(value).iter().map(|v| typed(v, &Value::Null)).collect())
        } else {
            typed(value, &like)
        };
        fields.insert(key.clone(), value.clone());
        serde_json::from_value::<Job>(Value::Object(fields.clone()))
            .map_err(|e| format!("column '{key}': bad value {value} ({e})"))?;
    }
    let mut job: Job = serde_json::from_value(Value::Object(fields)).map_err(|e| e.to_string())?;
    // A row's preset replaces the flags' settings, except those the row's own cells set.
    if let Some(name) = text("preset")? {
        let given: Vec<&str> = row
            .cells
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        let preset = crate::preset::Preset::named(&name).map_err(|e| e.to_string())?;
        job = preset.under(&job, &given).map_err(|e| e.to_string())?;
    }
    // An init image named by the row is a file beside the manifest, like the other inputs.
    if let (Some(_), InitSpec::File(p)) = (text("init")?, &job.init) {
        job.init = InitSpec::File(resolve(dir, &p.to_string_lossy()));
    }
    job.output = match text("output")? {
        Some(o) => resolve(output_dir, &o),
        None => output_dir.join(output_name(template, &job).map_err(|e| e.to_string())?),
    };
    job.validate().map_err(|e| e.to_string())?;
    let init_file = match &job.init {
        InitSpec::File(p) => Some(p),
        _ => None,
    };
    for input in std::iter::once(&job.content)
        .chain(&job.styles)
        .chain(job.mask_files())
        .chain(init_file)
    {
        if !input.is_file() {
            return Err(format!("{}: no such file", input.display()));
        }
    }
    Ok(job)
}

/// The paintings of a manifest file: each row's cells override `base` (paths are relative to
/// the manifest's folder; `output`, relative to `output_dir`, defaults to `template`). All bad
/// rows are reported in one error, one line each, before anything runs.
pub fn manifest(path: &Path, output_dir: &Path, template: &str, base: &Job) -> Result<Vec<Job>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let bad = |errors: Vec<String>| {
        Error::Config(format!(
            "manifest {}: {} bad row(s):\n  {}",
            path.display(),
            errors.len(),
            errors.join("\n  ")
        ))
    };
    let rows = rows(path, &text).map_err(bad)?;
    if rows.is_empty() {
        return Err(Error::Config(format!(
            "manifest {}: no rows",
            path.display()
        )));
    }
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    for row in &rows {
        match row_job(row, base, dir, output_dir, template) {
            Ok(job) => jobs.push(job),
            Err(e) => errors.push(format!("line {}: {e}", row.line)),
        }
    }
    if !errors.is_empty() {
        return Err(bad(errors));
    }
    finish(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Optimizer, OriginalColors, StyleMask};
    use crate::ops::Pool;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for name in ["a.jpg", "b.png", "s1.jpg", "s2.png", "notes.txt"] {
                std::fs::write(dir.path().join(name), b"x").unwrap();
            }
            Files { dir }
        }

        fn manifest(&self, name: &str, text: &str) -> Result<Vec<Job>> {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            manifest(&path, Path::new("/out"), DEFAULT_NAME, &Job::default())
        }
    }

    #[test]
    fn names_fill_the_template() {
        let mut job = Job::new("/p/photo.jpg", ["/s/starry.jpg"], "x.png");
        assert_eq!(
            output_name(DEFAULT_NAME, &job).unwrap(),
            "photo__starry.png"
        );
        job.styles.push("/s/wave.png".into());
        job.size = 256;
        assert_eq!(
            output_name("{style}/{content}-{size}.jpg", &job).unwrap(),
            "starry+wave/photo-256.jpg"
        );
        assert!(output_name("{contents}.png", &job)
            .unwrap_err()
            .to_string()
            .contains("{contents}"));
        assert!(output_name("{content.png", &job).is_err());
    }

    #[test]
    fn folder_pairs_are_every_combination_sorted_by_output() {
        let f = Files::new();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("z.jpg"), b"x").unwrap();
        let jobs = pairs(
            f.dir.path(),
            other.path(),
            Path::new("/o"),
            DEFAULT_NAME,
            &Job::default(),
        )
        .unwrap();
        let outs: Vec<String> = jobs
            .iter()
            .map(|j| j.output.to_string_lossy().into())
            .collect();
        assert_eq!(
            outs,
            ["/o/a__z.png", "/o/b__z.png", "/o/s1__z.png", "/o/s2__z.png"]
        );
        // A template without {style} gives duplicates: an error before any work.
        let e = pairs(
            f.dir.path(),
            f.dir.path(),
            Path::new("/o"),
            "{content}.png",
            &Job::default(),
        );
        assert!(e.unwrap_err().to_string().contains("two items would write"));
    }

    #[test]
    fn a_preset_column_sets_what_the_row_does_not() {
        let f = Files::new();
        let base = Job {
            iterations: 9,
            ..Job::default()
        };
        let write = |name: &str, text: &str| {
            let path = f.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let m = write(
            "m.csv",
            "content,style,preset,iterations\n\
             a.jpg,s1.jpg,seed,\n\
             b.png,s1.jpg,jcjohnson,5\n\
             a.jpg,s2.png,,\n",
        );
        let jobs = manifest(&m, Path::new("/out"), DEFAULT_NAME, &base).unwrap();
        let row = |content: &str, style: &str| {
            let (c, s) = (f.dir.path().join(content), f.dir.path().join(style));
            jobs.iter()
                .find(|j| j.content == c && j.styles == [s.clone()])
                .expect("a row's job")
        };
        let jobs = [
            row("a.jpg", "s1.jpg"),
            row("b.png", "s1.jpg"),
            row("a.jpg", "s2.png"),
        ];
        let seed = crate::preset::Preset::Seed.job();
        assert_eq!(
            (jobs[0].optimizer, jobs[0].iterations, jobs[0].init.clone()),
            (seed.optimizer, seed.iterations, seed.init)
        );
        assert_eq!((jobs[1].pool, jobs[1].iterations), (Pool::Max, 5));
        assert_eq!(jobs[2].iterations, 9, "no preset: the batch's settings");
        let bad = write("bad.csv", "content,style,preset\na.jpg,s1.jpg,monet\n");
        let e = manifest(&bad, Path::new("/out"), DEFAULT_NAME, &base).unwrap_err();
        assert!(e.to_string().contains("unknown preset 'monet'"), "{e}");
    }

    #[test]
    fn mask_columns_are_paths_beside_the_manifest() {
        let f = Files::new();
        std::fs::write(f.dir.path().join("sky.png"), b"x").unwrap();
        let jobs = f
            .manifest(
                "m.csv",
                "content,style,style_mask,content_mask,content_mask_weight\n\
                 a.jpg,s1.jpg;s2.png,sky.png;none,b.png,2.5\n\
                 b.png,s1.jpg,,,\n",
            )
            .unwrap();
        let (a, b) = (&jobs[0], &jobs[1]);
        assert_eq!(
            a.style_masks,
            [
                StyleMask::File(f.dir.path().join("sky.png")),
                StyleMask::Everywhere
            ]
        );
        assert_eq!(a.content_mask, Some(f.dir.path().join("b.png")));
        assert_eq!(a.content_mask_weight, 2.5);
        assert!(b.style_masks.is_empty() && b.content_mask.is_none());
        let missing = f
            .manifest("n.csv", "content,style,style_mask\na.jpg,s1.jpg,gone.png\n")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("gone.png: no such file"), "{missing}");
        let count = f
            .manifest(
                "c.csv",
                "content,style,style_mask\na.jpg,s1.jpg,sky.png;sky.png\n",
            )
            .unwrap_err()
            .to_string();
        assert!(count.contains("--style-mask"), "{count}");
    }

    #[test]
    fn an_init_file_column_is_a_path_beside_the_manifest() {
        let f = Files::new();
        let jobs = f
            .manifest(
                "m.csv",
                "content,style,init,output\n\
                 a.jpg,s1.jpg,b.png,1.png\n\
                 a.jpg,s1.jpg,noise,2.png\n\
                 b.png,s1.jpg,,3.png\n",
            )
            .unwrap();
        assert_eq!(jobs[0].init, InitSpec::File(f.dir.path().join("b.png")));
        assert_eq!(jobs[1].init, InitSpec::Noise);
        assert_eq!(jobs[2].init, Job::default().init);
        let missing = f
            .manifest("n.csv", "content,style,init\na.jpg,s1.jpg,gone.png\n")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("gone.png: no such file"), "{missing}");
    }

    #[test]
    fn csv_rows_override_the_batch_settings() {
        let f = Files::new();
        let jobs = f
            .manifest(
                "m.csv",
                "content,style,output,size,style_weight,optimizer,original_colors,scales,style_blend,tile,scale_iterations,style_loss\n\
                 a.jpg,s1.jpg;s2.png,,256,100,adam,yes,64;128,0.7;0.3,64,30;10,w2\n\
                 b.png,s1.jpg,b-custom.jpg,,,,,,,,,\n",
            )
            .unwrap();
        assert_eq!(jobs.len(), 2);
        let (a, b) = (&jobs[0], &jobs[1]);
        assert_eq!(a.output, Path::new("/out/a__s1+s2.png"));
        assert_eq!(
            a.styles,
            [f.dir.path().join("s1.jpg"), f.dir.path().join("s2.png")]
        );
        assert_eq!(
            (a.size, a.style_weight, a.optimizer),
            (256, 100.0, Optimizer::Adam)
        );
        assert_eq!(a.original_colors, OriginalColors::Luminance);
        assert_eq!(a.scales, [64, 128]);
        assert_eq!(a.scale_iterations, [30, 10]);
        assert!(b.scale_iterations.is_empty());
        assert_eq!(a.style_blend, Some(vec![0.7, 0.3]));
        assert_eq!(a.tile, Some(64));
        assert_eq!(b.tile, None);
        assert_eq!(a.loss_config().style_loss, crate::loss::StyleLoss::W2);
        assert_eq!(b.style_loss, crate::loss::StyleLoss::Gram);
        // Empty cells keep the batch's settings.
        let defaults = Job::default();
        assert_eq!(b.output, Path::new("/out/b-custom.jpg"));
        assert_eq!(
            (b.size, b.style_weight),
            (defaults.size, defaults.style_weight)
        );
    }

    #[test]
    fn original_colors_cells_take_booleans_and_method_names() {
        let f = Files::new();
        let cells = [
            ("yes", OriginalColors::Luminance),
            ("true", OriginalColors::Luminance),
            ("1", OriginalColors::Luminance),
            ("Luminance", OriginalColors::Luminance),
            ("no", OriginalColors::Off),
            ("false", OriginalColors::Off),
            ("0", OriginalColors::Off),
            ("off", OriginalColors::Off),
            ("histogram", OriginalColors::Histogram),
        ];
        let mut csv = String::from("content,style,output,original_colors\n");
        for (i, (cell, _)) in cells.iter().enumerate() {
            csv.push_str(&format!("a.jpg,s1.jpg,{i}.png,{cell}\n"));
        }
        let jobs = f.manifest("colors.csv", &csv).unwrap();
        for (i, (cell, want)) in cells.iter().enumerate() {
            let job = jobs.iter().find(|j| j.output.ends_with(format!("{i}.png")));
            assert_eq!(job.unwrap().original_colors, *want, "{cell}");
        }
        let jobs = f
            .manifest(
                "colors.jsonl",
                "{\"content\":\"a.jpg\",\"style\":\"s1.jpg\",\"output\":\"t.png\",\"original_colors\":true}\n\
                 {\"content\":\"a.jpg\",\"style\":\"s1.jpg\",\"output\":\"h.png\",\"original_colors\":\"histogram\"}\n",
            )
            .unwrap();
        assert_eq!(jobs[0].original_colors, OriginalColors::Histogram);
        assert_eq!(jobs[1].original_colors, OriginalColors::Luminance);
        let e = f
            .manifest(
                "bad.csv",
                "content,style,original_colors\na.jpg,s1.jpg,sepia\n",
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2: column 'original_colors'") && e.contains("histogram"),
            "{e}"
        );
    }

    #[test]
    fn json_lines_rows_take_native_values() {
        let f = Files::new();
        let jobs = f
            .manifest(
                "m.jsonl",
                "{\"content\":\"a.jpg\",\"style\":[\"s1.jpg\"],\"size\":128,\"style_layers\":\"conv1_1,conv2_1\"}\n\n\
                 {\"content\":\"b.png\",\"style\":\"s2.png\",\"output\":\"sub/b.png\"}\n",
            )
            .unwrap();
        assert_eq!(jobs[0].size, 128);
        assert_eq!(jobs[0].style_layers.to_string(), "conv1_1,conv2_1");
        assert_eq!(jobs[1].output, Path::new("/out/sub/b.png"));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let f = Files::new();
        let e = f
            .manifest(
                "bad.csv",
                "content,style,size,colour\n\
                 a.jpg,s1.jpg,256,\n\
                 missing.jpg,s1.jpg,,\n\
                 a.jpg,s1.jpg,huge,\n\
                 b.png,s2.png,8,\n\
                 b.png,s2.png,,red\n\
                 ,s2.png,,\n",
            )
            .unwrap_err()
            .to_string();
        for want in [
            "5 bad row(s)",
            "line 3: ",
            "missing.jpg: no such file",
            "line 4: column 'size'",
            "line 5: invalid configuration: --size 8",
            "line 6: unknown column 'colour'",
            "line 7: no 'content'",
        ] {
            assert!(e.contains(want), "{want} not in:\n{e}");
        }
        assert!(!e.contains("line 2:"), "{e}");
        let e = f.manifest(
            "bad.jsonl",
            "{\"content\":\"a.jpg\",\"style\":\"s1.jpg\"}\nnot json\n",
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("line 2: not a JSON object"));
    }
}
