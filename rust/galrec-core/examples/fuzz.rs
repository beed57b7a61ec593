//! Long fuzzing runs of galrec-core's readers of untrusted input (see `galrec_core::fuzz`).
//!
//! ```text
//! cargo run --profile fuzz -p galrec-core --example fuzz -- \
//!     --target graph-file --iterations 1000000 --seed 0 [--seconds 600] \
//!     [--max-memory-mb 4096] [--hang-seconds 10] [--crash-dir target/fuzz-crashes]
//! cargo run --profile fuzz -p galrec-core --example fuzz -- --target graph-file --seed 0 --replay 1234
//! cargo run --profile fuzz -p galrec-core --example fuzz -- --target templates --input crash.bin
//! ```
//!
//! `--target all` runs the three targets in turn. `--iterations` defaults to 1,000,000, or to
//! no limit when `--seconds` is given. A panicking input is saved to the crash
//! directory and the run goes on; a hang (one input running `--hang-seconds`) is saved and ends
//! the run; an abort (which no Rust code can catch) prints the input's index, which `--replay`
//! regenerates and saves. The run is capped at `--max-memory-mb` of address space (0: no cap),
//! so a huge allocation shows as an error or an abort instead of swapping. Exit status 0 means
//! no panic, abort or hang.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use galrec_core::fuzz::{Fuzzer, Target};

/// The input running now, for the watchdog and the abort handler.
static CURRENT: AtomicU64 = AtomicU64::new(0);
/// The position in `Target::ALL` of the target running now.
static CURRENT_TARGET: AtomicUsize = AtomicUsize::new(0);

struct Options {
    targets: Vec<Target>,
    iterations: Option<u64>,
    seconds: Option<u64>,
    seed: u64,
    crash_dir: PathBuf,
    max_memory_mb: u64,
    hang_seconds: u64,
    replay: Option<u64>,
    input: Option<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        targets: Target::ALL.to_vec(),
        iterations: None,
        seconds: None,
        seed: 0,
        crash_dir: PathBuf::from("target/fuzz-crashes"),
        max_memory_mb: 4096,
        hang_seconds: 10,
        replay: None,
        input: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--target" => {
                let name = value()?;
                options.targets = match name.as_str() {
                    "all" => Target::ALL.to_vec(),
                    _ => vec![Target::parse(&name).ok_or_else(|| {
                        format!("unknown target {name:?} (graph-file, text-store, templates, all)")
                    })?],
                };
            }
            "--iterations" => options.iterations = Some(number(value()?)?),
            "--seconds" => options.seconds = Some(number(value()?)?),
            "--seed" => options.seed = number(value()?)?,
            "--crash-dir" => options.crash_dir = PathBuf::from(value()?),
            "--max-memory-mb" => options.max_memory_mb = number(value()?)?,
            "--hang-seconds" => options.hang_seconds = number(value()?)?,
            "--replay" => options.replay = Some(number(value()?)?),
            "--input" => options.input = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

/// Caps the address space of this process at `mb` MiB.
#[cfg(target_os = "linux")]
fn cap_memory(mb: u64) -> Result<(), String> {
    let bytes = mb.saturating_mul(1 << 20);
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: `setrlimit` reads one `rlimit` through the pointer, which points to a live
    // `rlimit` on our stack.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        return Err(format!("cannot cap memory at {mb} MiB"));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn cap_memory(_mb: u64) -> Result<(), String> {
    Err("--max-memory-mb is supported on Linux only (pass 0)".into())
}

/// On SIGABRT (an allocation failure or another abort), says which input was running.
#[cfg(target_os = "linux")]
fn report_aborts() {
    extern "C" fn on_abort(_signal: libc::c_int) {
        // Only async-signal-safe work here: atomics, stack buffers and write(2).
        let target = Target::ALL[CURRENT_TARGET.load(Relaxed) % Target::ALL.len()].name();
        let mut digits = [0u8; 20];
        let (mut index, mut start) = (CURRENT.load(Relaxed), digits.len());
        loop {
            start -= 1;
            digits[start] = b'0' + (index % 10) as u8;
            index /= 10;
            if index == 0 {
                break;
            }
        }
        let parts: [&[u8]; 5] = [
            b"\nfuzz: aborted on ",
            target.as_bytes(),
            b" input #",
            &digits[start..],
            b"; regenerate it with --replay and that index\n",
        ];
        for part in parts {
            // SAFETY: write(2) is async-signal-safe and reads `part`, live for the call.
            unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
        }
        // SAFETY: _exit(2) is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(134) };
    }
    // SAFETY: the handler only does async-signal-safe work (see above), as a signal handler
    // must; installing it changes no Rust-visible state.
    unsafe {
        libc::signal(libc::SIGABRT, on_abort as *const () as libc::sighandler_t);
    }
}

#[cfg(not(target_os = "linux"))]
fn report_aborts() {}

/// Ends the process (saving the input) once one input has run `limit`.
fn watch_for_hangs(fuzzer: &Fuzzer, options: &Options, running: &AtomicBool) {
    let limit = Duration::from_secs(options.hang_seconds);
    let (mut seen, mut since) = (u64::MAX, Instant::now());
    while running.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let index = CURRENT.load(Relaxed);
        if index != seen {
            (seen, since) = (index, Instant::now());
        } else if since.elapsed() >= limit {
            let path = options
                .crash_dir
                .join(format!("hang-seed{}-input{index}.bin", options.seed));
            let saved = std::fs::create_dir_all(&options.crash_dir)
                .and_then(|()| std::fs::write(&path, fuzzer.input(index)));
            eprintln!(
                "fuzz: input #{index} has run for {limit:?} (hang); saved to {} ({saved:?})",
                path.display()
            );
            std::process::exit(3);
        }
    }
}

fn main() -> Result<(), String> {
    let options = parse_args()?;
    if options.max_memory_mb > 0 {
        cap_memory(options.max_memory_mb)?;
    }
    report_aborts();
    let mut failed = false;
    for target in &options.targets {
        let target = *target;
        CURRENT_TARGET.store(
            Target::ALL.iter().position(|&t| t == target).unwrap_or(0),
            Relaxed,
        );
        let fuzzer = Fuzzer::new(target, options.seed)?;
        if let Some(path) = &options.input {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("{}: {:?}", target.name(), fuzzer.run_one(&bytes));
            continue;
        }
        if let Some(index) = options.replay {
            let path = options.crash_dir.join(format!(
                "{}-seed{}-input{index}.bin",
                target.name(),
                options.seed
            ));
            std::fs::create_dir_all(&options.crash_dir)
                .and_then(|()| std::fs::write(&path, fuzzer.input(index)))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            println!("saved to {}", path.display());
            println!(
                "{}: {:?}",
                target.name(),
                fuzzer.run_one(&fuzzer.input(index))
            );
            continue;
        }
        let running = AtomicBool::new(true);
        let report = std::thread::scope(|scope| {
            scope.spawn(|| watch_for_hangs(&fuzzer, &options, &running));
            let default_count = match options.seconds {
                Some(_) => u64::MAX,
                None => 1_000_000,
            };
            let report = fuzzer.run(
                options.iterations.unwrap_or(default_count),
                options.seconds.map(Duration::from_secs),
                &options.crash_dir,
                &CURRENT,
            );
            running.store(false, Relaxed);
            report
        });
        let seconds = report.elapsed.as_secs_f64();
        println!(
            "{} seed {}: {} inputs in {seconds:.1} s ({:.0}/s): {} accepted, {} rejected, {} panics; slowest input {:.1} ms; memory cap {}",
            target.name(),
            options.seed,
            report.inputs,
            report.inputs as f64 / seconds.max(1e-9),
            report.accepted,
            report.rejected,
            report.panics.len(),
            report.slowest.as_secs_f64() * 1e3,
            match options.max_memory_mb {
                0 => "none".to_string(),
                mb => format!("{mb} MiB"),
            }
        );
        for path in &report.panics {
            println!("  panicked: {}", path.display());
        }
        failed |= !report.panics.is_empty();
    }
    if failed {
        return Err("some inputs panicked".into());
    }
    Ok(())
}
