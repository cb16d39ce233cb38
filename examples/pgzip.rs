//! The backup's compressor alone, stdin to stdout: `pgzip [LEVEL [THREADS [BLOCK_SIZE [nocheck]]]]`
//! (defaults: 6, all cores, 512 KiB, self-check on; `nocheck` turns it off to measure its
//! cost). `bench/run --engines` uses it to compare deflate engines on the same dump, without
//! pg_dump or the upload in the measurement.

use std::io::{stdin, stdout, BufWriter};
use std::process::ExitCode;

use pg_s3_backup::compress::{compress, GzipOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = GzipOptions::default();
    let parsed = (|| -> Result<(), String> {
        if let Some(level) = args.first() {
            opts.level = level.parse().map_err(|_| format!("bad level {level:?}"))?;
        }
        if let Some(threads) = args.get(1) {
            opts.threads = threads
                .parse()
                .map_err(|_| format!("bad thread count {threads:?}"))?;
        }
        if let Some(size) = args.get(2) {
            opts.block_size = size
                .parse()
                .map_err(|_| format!("bad block size {size:?}"))?;
        }
        match args.get(3).map(String::as_str) {
            None => {}
            Some("nocheck") => opts.self_check = false,
            Some(other) => return Err(format!("bad 4th argument {other:?} (only `nocheck`)")),
        }
        if args.len() > 4 {
            return Err("too many arguments".into());
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        eprintln!(
            "pgzip: {e}; usage: pgzip [LEVEL [THREADS [BLOCK_SIZE [nocheck]]]] < in > out.gz"
        );
        return ExitCode::from(2);
    }
    match compress(stdin(), BufWriter::new(stdout()), &opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgzip: {e}");
            ExitCode::FAILURE
        }
    }
}
