//! The `neural-style` binary end to end: runs on the tiny random VGG-19 (fast), one smoke run on
//! the real weights, and bad input, which must fail with one `error:` line naming the culprit and
//! leave no output, temporary or probe file behind (nor touch an existing output).

mod common;

use common::cli::*;
use common::images::{checker, gradient};
use common::{data, real_weights};
use image::{ImageFormat, Rgb, RgbImage};
use std::path::Path;
use std::process::Command;

#[test]
fn tiny_run_writes_png_of_the_right_size_and_lowers_the_loss() {
    let f = Fixture::new();
    let out = f.out("out.png");
    let run = neural_style(f.args(&[&f.style], &out, 30, &["--print-every", "1"]));
    assert_success(&run);
    assert_loss_fell(&run.stderr, 30);
    // 96x80 content at --size 48: 48 on the long side, aspect ratio kept.
    assert_eq!(decode(&out, ImageFormat::Png).dimensions(), (48, 40));
    assert_eq!(names_in(f.out_dir()), set(&["out.png"]));
}

#[test]
fn tiny_run_writes_jpeg_for_portrait_content() {
    let f = Fixture::new();
    // A portrait content image, 80 wide and 96 high: 40x48 at --size 48.
    gradient(80, 96).save(&f.content).unwrap();
    let out = f.out("out.jpg");
    let run = neural_style(f.args(&[&f.style], &out, 30, &["--print-every", "1"]));
    assert_success(&run);
    assert_loss_fell(&run.stderr, 30);
    assert_eq!(decode(&out, ImageFormat::Jpeg).dimensions(), (40, 48));
    assert_eq!(names_in(f.out_dir()), set(&["out.jpg"]));
}

#[test]
fn files_beside_the_output_are_left_alone() {
    let f = Fixture::new();
    // Names an output probe or checkpoint scheme might pick.
    let keep = ["out-0.probe", "out-0.png", ".out.png.tmp"];
    for name in keep {
        std::fs::write(f.out(name), name).unwrap();
    }
    let run = neural_style(f.args(&[&f.style], &f.out("out.png"), 5, &[]));
    assert_success(&run);
    let mut expected = keep.to_vec();
    expected.push("out.png");
    assert_eq!(names_in(f.out_dir()), set(&expected));
    for name in keep {
        assert_eq!(std::fs::read(f.out(name)).unwrap(), name.as_bytes());
    }
}

#[test]
fn a_closed_stderr_does_not_stop_the_run() {
    // As in `neural-style ... 2>&1 | head -3`: the reader goes away before the progress lines.
    let f = Fixture::new();
    let out = f.out("out.png");
    let mut child = Command::new(BIN)
        .args(f.args(&[&f.style], &out, 30, &["--print-every", "1"]))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?} with stderr closed");
    assert_eq!(decode(&out, ImageFormat::Png).dimensions(), (48, 40));
}

#[test]
fn save_every_writes_checkpoints_and_the_final_image() {
    let f = Fixture::new();
    let out = f.out("out.png");
    let run = neural_style(f.args(&[&f.style], &out, 30, &["--save-every", "10"]));
    assert_success(&run);
    // Steps 10 and 20; step 30 is the final image itself, under the output name.
    assert_eq!(
        names_in(f.out_dir()),
        set(&["out-10.png", "out-20.png", "out.png"])
    );
    let images: Vec<RgbImage> = ["out-10.png", "out-20.png", "out.png"]
        .iter()
        .map(|n| decode(&f.out(n), ImageFormat::Png))
        .collect();
    for img in &images {
        assert_eq!(img.dimensions(), (48, 40));
    }
    assert_ne!(images[0], images[1], "checkpoints 10 and 20 are identical");
    assert_ne!(images[1], images[2], "checkpoint 20 equals the final image");
}

#[test]
fn style_blend_weights_select_styles() {
    let f = Fixture::new();
    let both = [f.style.as_path(), f.style2.as_path()];
    let bytes = |name: &str, styles: &[&Path], extra: &[&str]| {
        let out = f.out(name);
        assert_success(&neural_style(f.args(styles, &out, 12, extra)));
        std::fs::read(&out).unwrap()
    };
    let first = bytes("first.png", &[&f.style], &[]);
    let second = bytes("second.png", &[&f.style2], &[]);
    assert!(first != second, "the two styles give the same picture");
    let blend_10 = bytes("blend10.png", &both, &["--style-blend", "1,0"]);
    assert!(
        blend_10 == first,
        "--style-blend 1,0 differs from the first style alone"
    );
    let blend_01 = bytes("blend01.png", &both, &["--style-blend", "0,1"]);
    assert!(
        blend_01 == second,
        "--style-blend 0,1 differs from the second style alone"
    );
    let even = bytes("even.png", &both, &[]);
    assert!(
        even != first && even != second,
        "an even blend equals one style"
    );
}

#[test]
fn style_blend_with_the_wrong_count_is_an_error() {
    let f = Fixture::new();
    let out = f.out("out.png");
    let both = [f.style.as_path(), f.style2.as_path()];
    for blend in ["1", "1,0,0", "1,x"] {
        let run = neural_style(f.args(&both, &out, 3, &["--style-blend", blend]));
        assert_clean_failure(&run, &["--style-blend"], f.out_dir(), &[]);
    }
}

#[test]
fn thread_count_does_not_change_the_result() {
    let f = Fixture::new();
    let both = [f.style.as_path(), f.style2.as_path()];
    // 96 pixels: the first layers' convolutions are cut into several tiles.
    let outputs: Vec<Vec<u8>> = ["1", "2", "3"]
        .iter()
        .map(|threads| {
            let out = f.out(&format!("threads{threads}.png"));
            let extra = ["--size", "96", "--threads", threads];
            let run = neural_style(f.args(&both, &out, 8, &extra));
            assert_success(&run);
            let banner = format!(" {threads} threads");
            assert!(run.stderr.contains(&banner), "{}", run.stderr);
            std::fs::read(&out).unwrap()
        })
        .collect();
    assert!(outputs[0] == outputs[1], "--threads 1 and 2 differ");
    assert!(outputs[0] == outputs[2], "--threads 1 and 3 differ");
}

#[test]
fn real_weights_smoke_run_with_the_seed_configuration() {
    let weights = s(&real_weights());
    let f = Fixture::new();
    let out = f.out("real.png");
    #[rustfmt::skip]
    let extra = [
        "--weights", &weights,
        "--size", "64",
        "--print-every", "1",
        // The seed's configuration, spelled out so that tuned defaults cannot hide it.
        "--content-layers", "conv4_2",
        "--style-layers", "conv1_1:0.2,conv2_1:0.2,conv3_1:0.2,conv4_1:0.2,conv5_1:0.2",
        "--content-weight", "10",
        "--style-weight", "40",
        "--tv-weight", "0",
        "--optimizer", "adam",
        "--learning-rate", "2",
        "--init", "noise",
        "--init-ratio", "0.6",
        "--pool", "avg",
    ];
    let run = neural_style(f.args(&[&f.style], &out, 5, &extra));
    assert_success(&run);
    assert_loss_fell(&run.stderr, 5);
    assert_eq!(decode(&out, ImageFormat::Png).dimensions(), (64, 53));
}

// ---- bad input ----

#[test]
fn missing_content_file() {
    let f = Fixture::new();
    let missing = s(&f.input_dir().join("no-such-photo.png"));
    let run = neural_style(f.args(&[&f.style], &f.out("out.png"), 3, &["--content", &missing]));
    assert_clean_failure(&run, &[&missing], f.out_dir(), &[]);
}

#[test]
fn corrupt_content_image() {
    let f = Fixture::new();
    let noise: Vec<u8> = (0..4000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&f.content, noise).unwrap();
    let run = neural_style(f.args(&[&f.style], &f.out("out.png"), 3, &[]));
    assert_clean_failure(&run, &[&s(&f.content)], f.out_dir(), &[]);
    // A PNG cut short is no better.
    let mut png = Vec::new();
    gradient(96, 80)
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    std::fs::write(&f.content, &png[..png.len() / 2]).unwrap();
    let run = neural_style(f.args(&[&f.style], &f.out("out.png"), 3, &[]));
    assert_clean_failure(&run, &[&s(&f.content)], f.out_dir(), &[]);
}

#[test]
fn missing_weights_file_says_how_to_fetch_it() {
    let f = Fixture::new();
    let missing = s(&f.input_dir().join("vgg19.npz"));
    let run = neural_style(f.args(&[&f.style], &f.out("out.png"), 3, &["--weights", &missing]));
    let culprits = [missing.as_str(), "scripts/fetch-weights.sh"];
    assert_clean_failure(&run, &culprits, f.out_dir(), &[]);
}

#[test]
fn corrupt_weights_file() {
    let f = Fixture::new();
    let garbage = f.input_dir().join("garbage.npz");
    std::fs::write(&garbage, vec![0x5a; 10_000]).unwrap();
    // The real format, cut in half.
    let half = f.input_dir().join("half.npz");
    let tiny = std::fs::read(data("tiny_vgg.npz")).unwrap();
    std::fs::write(&half, &tiny[..tiny.len() / 2]).unwrap();
    for weights in [s(&garbage), s(&half)] {
        let run = neural_style(f.args(&[&f.style], &f.out("out.png"), 3, &["--weights", &weights]));
        assert_clean_failure(&run, &[&weights], f.out_dir(), &[]);
    }
}

#[test]
fn output_in_a_missing_directory() {
    let f = Fixture::new();
    let out = f.out("no-such-dir/out.png");
    let run = neural_style(f.args(&[&f.style], &out, 3, &[]));
    assert_clean_failure(&run, &[&s(&out)], f.out_dir(), &[]);
}

#[test]
fn output_under_a_regular_file() {
    let f = Fixture::new();
    std::fs::write(f.out("file"), b"not a folder").unwrap();
    let out = f.out("file/out.png");
    let run = neural_style(f.args(&[&f.style], &out, 3, &[]));
    assert_clean_failure(&run, &[&s(&out)], f.out_dir(), &["file"]);
    assert_eq!(std::fs::read(f.out("file")).unwrap(), b"not a folder");
}

#[test]
fn output_that_is_a_directory_fails_before_the_run() {
    let f = Fixture::new();
    let out = f.out("out.png");
    std::fs::create_dir(&out).unwrap();
    // One error line and no progress line: the failure comes before the steps.
    let run = neural_style(f.args(&[&f.style], &out, 50, &["--print-every", "1"]));
    assert_clean_failure(&run, &[&s(&out)], f.out_dir(), &["out.png"]);
    assert!(names_in(&out).is_empty());
}

#[test]
fn output_in_a_read_only_directory() {
    use std::fs::{set_permissions, Permissions};
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let ro = f.out("ro");
    std::fs::create_dir(&ro).unwrap();
    set_permissions(&ro, Permissions::from_mode(0o555)).unwrap();
    // Root writes anyway: find out by trying rather than by guessing from the user name.
    if std::fs::write(ro.join("try"), b"").is_ok() {
        set_permissions(&ro, Permissions::from_mode(0o755)).unwrap();
        eprintln!("note: a 0555 directory is writable here (root?); read-only case skipped");
        return;
    }
    let out = ro.join("out.png");
    let run = neural_style(f.args(&[&f.style], &out, 3, &[]));
    set_permissions(&ro, Permissions::from_mode(0o755)).unwrap();
    assert_clean_failure(&run, &[&s(&out)], &ro, &[]);
}

#[test]
fn unsupported_output_extension() {
    let f = Fixture::new();
    for name in ["out.gif", "no-extension"] {
        let out = f.out(name);
        let run = neural_style(f.args(&[&f.style], &out, 3, &[]));
        assert_clean_failure(&run, &[&s(&out)], f.out_dir(), &[]);
    }
}

#[test]
fn unknown_layer_names() {
    let f = Fixture::new();
    let out = f.out("out.png");
    for (option, value, culprit) in [
        ("--style-layers", "conv1_1,conv9_9", "conv9_9"),
        ("--content-layers", "pool4", "pool4"),
    ] {
        let run = neural_style(f.args(&[&f.style], &out, 3, &[option, value]));
        assert_clean_failure(&run, &[culprit], f.out_dir(), &[]);
    }
}

#[test]
fn failed_run_leaves_an_existing_output_untouched() {
    let f = Fixture::new();
    let out = f.out("output.png");
    let mut previous = Vec::new();
    checker(30, 20)
        .write_to(&mut std::io::Cursor::new(&mut previous), ImageFormat::Png)
        .unwrap();
    std::fs::write(&out, &previous).unwrap();
    // A corrupt style image, found only after the weights and the content are loaded.
    let bad_style = f.input_dir().join("bad-style.png");
    std::fs::write(
        &bad_style,
        b"\x89PNG\r\n\x1a\n but then nothing of the sort",
    )
    .unwrap();
    let run = neural_style(f.args(&[&f.style, &bad_style], &out, 3, &[]));
    assert_clean_failure(&run, &[&s(&bad_style)], f.out_dir(), &["output.png"]);
    assert!(
        std::fs::read(&out).unwrap() == previous,
        "existing output was changed"
    );
    // Corrupt weights: the same.
    let garbage = s(&f.input_dir().join("garbage.npz"));
    std::fs::write(&garbage, b"PK\x03\x04 and nothing more").unwrap();
    let run = neural_style(f.args(&[&f.style], &out, 3, &["--weights", &garbage]));
    assert_clean_failure(&run, &[&garbage], f.out_dir(), &["output.png"]);
    assert!(
        std::fs::read(&out).unwrap() == previous,
        "existing output was changed"
    );
}

// Features of the parity issue: each test would fail if its flag were not wired through.

/// Mean |chroma difference| (R - Y and B - Y, 0..255 units) between two equal-size images,
/// over the pixels of `a` that no channel clipped at 0 or 255 (clipping changes the chroma).
fn mean_chroma_gap(a: &image::Rgb32FImage, b: &image::Rgb32FImage) -> f32 {
    let chroma = |p: &Rgb<f32>| {
        let y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        [p[0] - y, p[2] - y]
    };
    let unclipped = |p: &Rgb<f32>| p.0.iter().all(|&v| v > 0.5 / 255.0 && v < 254.5 / 255.0);
    let gaps: Vec<f32> = a
        .pixels()
        .zip(b.pixels())
        .filter(|(p, _)| unclipped(p))
        .map(|(p, q)| {
            let (cp, cq) = (chroma(p), chroma(q));
            (cp[0] - cq[0]).abs() + (cp[1] - cq[1]).abs()
        })
        .collect();
    assert!(
        gaps.len() * 2 > (a.width() * a.height()) as usize,
        "most pixels clipped"
    );
    255.0 * gaps.iter().sum::<f32>() / (2 * gaps.len()) as f32
}

#[test]
fn original_colors_keep_the_content_chroma() {
    let f = Fixture::new();
    let content = neural_style::image::resize_long_side(
        &neural_style::image::decode(&f.content).unwrap(),
        48,
    );
    let mut gaps = Vec::new();
    for (name, extra) in [
        ("plain.png", vec![]),
        ("kept.png", vec!["--original-colors"]),
    ] {
        let mut extra = extra;
        // From the photograph: the recoloured default start takes the synthetic stripes'
        // saturated colours, which clip most pixels, and clipped pixels have no chroma to
        // compare.
        extra.extend(["--output-depth", "16", "--init", "content"]);
        let run = neural_style(f.args(&[&f.style], &f.out(name), 20, &extra));
        assert_success(&run);
        let out = image::open(f.out(name)).unwrap().into_rgb32f();
        assert_eq!(out.dimensions(), content.dimensions());
        gaps.push(mean_chroma_gap(&out, &content));
    }
    // The painted colours of the striped style differ from the photograph's; kept ones do not
    // (up to clamping at the ends of 0..255).
    assert!(
        gaps[0] > 5.0,
        "plain run already has the content's colours: {gaps:?}"
    );
    assert!(
        gaps[1] < 1.0,
        "--original-colors did not keep the colours: {gaps:?}"
    );
}

#[test]
fn histogram_colors_paint_in_the_photograph_palette() {
    let f = Fixture::new();
    let content = neural_style::image::resize_long_side(
        &neural_style::image::decode(&f.content).unwrap(),
        48,
    );
    let photo = mean_rgb(&content);
    let mut outputs = Vec::new();
    let mut gaps = Vec::new();
    for (name, extra) in [
        ("plain.png", &[][..]),
        ("luminance.png", &["--original-colors", "luminance"][..]),
        ("histogram.png", &["--original-colors", "histogram"][..]),
    ] {
        let run = neural_style(f.args(&[&f.style, &f.style2], &f.out(name), 10, extra));
        assert_success(&run);
        let out = image::open(f.out(name)).unwrap().into_rgb32f();
        let mean = mean_rgb(&out);
        gaps.push(
            (0..3)
                .map(|c| (mean[c] - photo[c]).powi(2))
                .sum::<f64>()
                .sqrt(),
        );
        outputs.push(std::fs::read(f.out(name)).unwrap());
    }
    eprintln!("mean colour distance to the photograph (plain, luminance, histogram): {gaps:?}");
    assert!(
        outputs[2] != outputs[0],
        "histogram equals no --original-colors"
    );
    assert!(outputs[2] != outputs[1], "histogram equals luminance");
    assert!(
        gaps[2] < gaps[0] / 2.0,
        "histogram matching did not bring the photograph's colours: {gaps:?}"
    );
    // The bare flag still means luminance.
    let run = neural_style(f.args(
        &[&f.style, &f.style2],
        &f.out("bare.png"),
        10,
        &["--original-colors"],
    ));
    assert_success(&run);
    assert!(std::fs::read(f.out("bare.png")).unwrap() == outputs[1]);
}

#[test]
fn a_tiled_histogram_run_paints_the_untiled_picture() {
    // The matched styles' targets are computed in tiles too (and each stage's, and each
    // style's of a blend): the same picture up to rounding.
    let f = Fixture::new();
    let run = |name: &str, tile: &[&str]| {
        let mut extra = vec![
            "--size",
            "96",
            "--scales",
            "48",
            "--optimizer",
            "adam",
            "--original-colors",
            "histogram",
            "--output-depth",
            "16",
        ];
        extra.extend_from_slice(tile);
        let run = neural_style(f.args(&[&f.style, &f.style2], &f.out(name), 3, &extra));
        assert_success(&run);
        decode16(&f.out(name))
    };
    let whole = run("whole.png", &[]);
    let tiled = run("tiled.png", &["--tile", "32"]);
    let worst = whole
        .iter()
        .zip(&tiled)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    assert!(worst <= 2.0 / 65535.0, "tiled differs by {worst}");
}

#[test]
fn a_bad_colour_method_is_a_one_line_error() {
    let f = Fixture::new();
    let run = neural_style(f.args(
        &[&f.style],
        &f.out("out.png"),
        3,
        &["--original-colors", "sepia"],
    ));
    assert_clean_failure(
        &run,
        &["sepia", "--original-colors", "histogram"],
        f.out_dir(),
        &[],
    );
    assert_eq!(run.code, Some(2));
}

#[test]
fn resuming_a_histogram_checkpoint_with_another_colour_method_is_refused() {
    let f = Fixture::new();
    let ck = f.out("ck.bin");
    let ck_arg = ck.to_str().unwrap();
    let run = neural_style(f.args(
        &[&f.style],
        &f.out("out.png"),
        3,
        &["--original-colors", "histogram", "--checkpoint", ck_arg],
    ));
    assert_success(&run);
    let resume = |extra: &[&str]| {
        let mut args = vec!["--resume", ck_arg, "--weights"];
        let weights = data("tiny_vgg.npz");
        args.push(weights.to_str().unwrap());
        args.extend_from_slice(extra);
        neural_style(args)
    };
    for flag in [
        &["--original-colors"][..],
        &["--original-colors", "off"][..],
    ] {
        let run = resume(flag);
        assert_clean_failure(
            &run,
            &["ck.bin", "--original-colors", "histogram"],
            f.out_dir(),
            &["ck.bin", "out.png"],
        );
    }
    assert_success(&resume(&["--original-colors", "histogram"]));
}

#[test]
fn multi_scale_run_reports_each_stage_and_ends_at_the_requested_size() {
    let f = Fixture::new();
    let (out, csv) = (f.out("out.png"), f.out("loss.csv"));
    let extra = [
        "--scales",
        "24,32",
        "--json",
        "--print-every",
        "1",
        "--loss-csv",
        csv.to_str().unwrap(),
    ];
    let run = neural_style(f.args(&[&f.style], &out, 4, &extra));
    assert_success(&run);
    assert_eq!(decode(&out, ImageFormat::Png).dimensions(), (48, 40));
    // One JSON object per step on stdout, stages 1..3 at sizes 24, 32, 48.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 12, "{}", run.stdout);
    for (i, line) in lines.iter().enumerate() {
        let (stage, size) = (i / 4 + 1, [24, 32, 48][i / 4]);
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(
            line.contains(&format!(
                "\"scale\":{stage},\"size\":{size},\"iteration\":{}",
                i % 4 + 1
            )),
            "{line}"
        );
    }
    assert!(
        run.stderr.is_empty(),
        "--json keeps stderr quiet: {}",
        run.stderr
    );
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), 13, "{csv}");
    assert!(csv.starts_with("scale,size,iteration,"));
}

#[test]
fn defaults_run_lbfgs_from_the_recoloured_photograph() {
    let f = Fixture::new();
    let runs: [(&str, &[&str]); 5] = [
        ("defaults.png", &[]),
        (
            "spelled.png",
            &["--optimizer", "lbfgs", "--init", "recolored"],
        ),
        ("adam.png", &["--optimizer", "adam"]),
        ("noise.png", &["--init", "noise"]),
        ("content.png", &["--init", "content"]),
    ];
    let mut bytes = Vec::new();
    for (name, extra) in runs {
        let run = neural_style(f.args(&[&f.style], &f.out(name), 4, extra));
        assert_success(&run);
        bytes.push(std::fs::read(f.out(name)).unwrap());
    }
    assert!(
        bytes[0] == bytes[1],
        "defaults differ from --optimizer lbfgs --init recolored"
    );
    assert!(bytes[0] != bytes[2], "defaults equal --optimizer adam");
    assert!(bytes[0] != bytes[3], "defaults equal --init noise");
    assert!(bytes[0] != bytes[4], "defaults equal --init content");
}

#[test]
fn lbfgs_from_the_cli_lowers_the_loss() {
    let f = Fixture::new();
    let run = neural_style(f.args(
        &[&f.style],
        &f.out("out.png"),
        15,
        &[
            "--optimizer",
            "lbfgs",
            "--history",
            "5",
            "--print-every",
            "1",
        ],
    ));
    assert_success(&run);
    assert_loss_fell(&run.stderr, 15);
}

#[test]
fn style_scale_changes_the_painting() {
    let f = Fixture::new();
    let mut bytes = Vec::new();
    for (name, scale) in [("a.png", "1"), ("b.png", "0.5")] {
        let run = neural_style(f.args(&[&f.style], &f.out(name), 5, &["--style-scale", scale]));
        assert_success(&run);
        bytes.push(std::fs::read(f.out(name)).unwrap());
    }
    assert_ne!(bytes[0], bytes[1]);
}

#[test]
fn bad_feature_settings_fail_cleanly() {
    let f = Fixture::new();
    for (extra, culprit) in [
        (vec!["--scales", "32,24"], "--scales"),
        (vec!["--scales", "64"], "--scales"),
        (vec!["--style-scale", "0"], "--style-scale"),
        (vec!["--history", "0"], "history"),
    ] {
        let run = neural_style(f.args(&[&f.style], &f.out("out.png"), 3, &extra));
        assert_clean_failure(&run, &[culprit], f.out_dir(), &[]);
    }
    let run = neural_style(f.args(&[&f.style], &f.out("out.jpg"), 3, &["--output-depth", "16"]));
    assert_clean_failure(&run, &["16"], f.out_dir(), &[]);
}

#[test]
fn the_memory_guard_refuses_an_impossible_size_before_any_work() {
    let f = Fixture::new();
    let out = f.out("huge.png");
    // 96x80 content at a long side of 16384: hundreds of GiB, more than any machine here.
    let run = neural_style(f.args(&[&f.style], &out, 3, &["--size", "16384"]));
    assert_clean_failure(
        &run,
        &["16384x13653", "GiB", "is available"],
        f.out_dir(),
        &[],
    );
    let run = neural_style(f.args(&[&f.style], &out, 3, &["--max-memory", "20M"]));
    assert_clean_failure(&run, &["--max-memory", "20 MiB"], f.out_dir(), &[]);
    let run = neural_style(f.args(&[&f.style], &out, 3, &["--max-memory", "lots"]));
    assert_clean_failure(&run, &["--max-memory"], f.out_dir(), &[]);
}

#[test]
fn estimate_prints_memory_and_time_and_paints_nothing() {
    let f = Fixture::new();
    let out = f.out("out.png");
    let run = neural_style(f.args(&[&f.style], &out, 3, &["--estimate", "--scales", "32"]));
    assert_success(&run);
    assert!(run.stderr.contains("peak memory about"), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("s per step").count(),
        2,
        "{}",
        run.stderr
    );
    assert!(names_in(f.out_dir()).is_empty());
}

#[test]
fn a_tiled_run_paints_the_untiled_picture() {
    // Multi-scale, two styles, original colours, 16-bit output: every part of a painting
    // through the tiled evaluation, against the whole-image one.
    let f = Fixture::new();
    for optimizer in ["adam", "lbfgs"] {
        let run = |name: &str, tile: &[&str]| {
            let out = f.out(name);
            let mut extra = vec![
                "--size",
                "96",
                "--scales",
                "48",
                "--optimizer",
                optimizer,
                "--init",
                "noise",
                "--original-colors",
                "--output-depth",
                "16",
                "--threads",
                "2",
            ];
            extra.extend_from_slice(tile);
            let run = neural_style(f.args(&[&f.style, &f.style2], &out, 4, &extra));
            assert_success(&run);
            (decode16(&out), run.stderr)
        };
        let (whole, _) = run(&format!("{optimizer}-whole.png"), &[]);
        let (tiled, log) = run(&format!("{optimizer}-tiled.png"), &["--tile", "32"]);
        assert!(log.contains("at 96x80 in 9 tiles of 32 px"), "{log}");
        let diffs: Vec<f64> = whole
            .iter()
            .zip(&tiled)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let worst = diffs.iter().fold(0.0f64, |m, &d| m.max(d));
        let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
        eprintln!("{optimizer}: largest difference {worst:e}, mean {mean:e}");
        match optimizer {
            // Adam's steps are smooth in the gradient: rounding stays at rounding.
            "adam" => assert!(worst <= 2.0 / 65535.0, "adam: differs by {worst}"),
            // L-BFGS's line search can take another branch on a rounding-level difference, so
            // a few pixels move further; the picture stays the same.
            _ => assert!(
                worst < 2.0 / 255.0 && mean < 1e-4,
                "lbfgs: {worst}, mean {mean}"
            ),
        }
    }
}

#[test]
fn a_budget_below_the_whole_image_is_met_with_tiles() {
    let f = Fixture::new();
    let mut job = neural_style::Job::new(&f.content, [&f.style], f.out("o.png"));
    job.size = 400;
    let whole = neural_style::memory::estimate(&job, (96, 80), &[(72, 72)], 2);
    assert_eq!(whole.tile, None);
    let budget = format!("{}M", (whole.peak - whole.network / 2) >> 20);
    let out = f.out("tiled.png");
    let run = neural_style(f.args(
        &[&f.style],
        &out,
        2,
        &["--size", "400", "--max-memory", &budget, "--threads", "2"],
    ));
    assert_success(&run);
    assert!(run.stderr.contains(" tiles of "), "{}", run.stderr);
    decode(&out, ImageFormat::Png);
    // A budget the image-sized state alone exceeds: refused before any work, in one line.
    let run = neural_style(f.args(
        &[&f.style],
        &f.out("none.png"),
        2,
        &["--size", "4000", "--max-memory", "600M"],
    ));
    assert_clean_failure(
        &run,
        &["tiles", "600 MiB", "--max-memory"],
        f.out_dir(),
        &["tiled.png"],
    );
}

#[test]
fn a_preset_paints_what_its_flags_paint() {
    // A preset is only a starting set of flags: spelled out, they give the same bytes, and a
    // flag given with the preset still wins (here --iterations and --size, set by `args`).
    let f = Fixture::new();
    let tv = format!("{}", 1e-3 * (3.0 * 512.0 * 512.0) / 2.0);
    let jcjohnson_layers = "relu1_1:0.0009765625,relu2_1:0.000244140625,relu3_1:0.00006103515625,\
                            relu4_1:0.0000152587890625,relu5_1:0.0000152587890625";
    let cases: [(&str, Vec<&str>); 2] = [
        (
            "seed",
            vec![
                "--optimizer",
                "adam",
                "--learning-rate",
                "2",
                "--init",
                "noise",
                "--init-ratio",
                "0.6",
                "--content-weight",
                "10",
                "--style-weight",
                "40",
                "--tv-weight",
                "0",
                "--pool",
                "avg",
                "--history",
                "10",
                "--style-layers",
                "conv1_1,conv2_1,conv3_1,conv4_1,conv5_1",
            ],
        ),
        (
            "jcjohnson",
            vec![
                "--optimizer",
                "lbfgs",
                "--history",
                "100",
                "--learning-rate",
                "10",
                "--content-weight",
                "20",
                "--style-weight",
                "100",
                "--tv-weight",
                &tv,
                "--content-layers",
                "relu4_2",
                "--style-layers",
                jcjohnson_layers,
                "--pool",
                "max",
                "--init",
                "random",
            ],
        ),
    ];
    let plain = f.out("plain.png");
    assert_success(&neural_style(f.args(&[&f.style], &plain, 3, &[])));
    let plain = std::fs::read(plain).unwrap();
    for (name, flags) in cases {
        let (with_preset, spelled) = (
            f.out(&format!("{name}.png")),
            f.out(&format!("{name}-flags.png")),
        );
        assert_success(&neural_style(f.args(
            &[&f.style],
            &with_preset,
            3,
            &["--preset", name],
        )));
        assert_success(&neural_style(f.args(&[&f.style], &spelled, 3, &flags)));
        let bytes = std::fs::read(&with_preset).unwrap();
        assert!(
            bytes == std::fs::read(&spelled).unwrap(),
            "--preset {name} differs from its flags"
        );
        assert!(bytes != plain, "--preset {name} changed nothing");
    }
    let run = neural_style(f.args(&[&f.style], &f.out("x.png"), 1, &["--preset", "monet"]));
    assert_eq!(run.code, Some(2));
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
}

#[test]
fn scale_iterations_give_each_coarse_stage_its_own_step_count() {
    let f = Fixture::new();
    let out = f.out("out.png");
    let extra = [
        "--optimizer",
        "adam",
        "--scales",
        "24,32",
        "--scale-iterations",
        "5,3",
        "--json",
        "--print-every",
        "1",
    ];
    let run = neural_style(f.args(&[&f.style], &out, 2, &extra));
    assert_success(&run);
    let per_stage: Vec<usize> = (1..=3)
        .map(|stage| {
            let tag = format!("\"scale\":{stage},");
            run.stdout.lines().filter(|l| l.contains(&tag)).count()
        })
        .collect();
    assert_eq!(per_stage, [5, 3, 2], "{}", run.stdout);
    // One count per scale, or none.
    let bad = neural_style(f.args(
        &[&f.style],
        &out,
        2,
        &["--scales", "24,32", "--scale-iterations", "5"],
    ));
    assert!(!bad.success);
    assert!(
        bad.stderr
            .contains("--scale-iterations has 1 counts for 2 --scales"),
        "{}",
        bad.stderr
    );
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{}", bad.stderr);
}
