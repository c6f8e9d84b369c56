//! The secondary client process itself: `vdisim __abi-secondary --library
//! PATH` (hidden from `--help`). It loads the VDI library at PATH (its own
//! process, its own copy of the library), makes one set object, and
//! says it is ready (a first line for thread [`wire::READY`]), and
//! performs the calls it reads on standard input ([`super::wire::Request`],
//! one JSON line each) through the same path as the primary's
//! ([`super::super::perform::perform`]): one OS thread per program thread,
//! so a GetCommand blocked on one device does not hold up another. Each
//! answer is one JSON line on standard output. Nothing else is written to
//! standard output.
//!
//! The library finds its server as any client process does: the parent
//! sets `VDISIM_SERVER` (the `vdisim serve` socket the primary's set lives
//! on) and `VDISIM_TIME_SCALE` (the case's clock). OpenInSecondary then
//! joins the primary's set by name.
//!
//! At the end of standard input the process answers the calls in progress
//! (for at most [`EXIT_GRACE`]: a call may wait forever) and exits, without
//! Close (as the model's secondary, which never closes its view). Killed, it
//! tells nobody: clause `abort.secondary-death-undetected`.

use super::super::client_faults::ClientFaults;
use super::super::perform::perform;
use super::super::shared::{Abi, CaseState, Shared};
use super::wire::{self, BufferOp, MAX_BUFFER_BYTES, MAX_THREADS, Request, Response, WireReply};
use crate::backends::linux_abi::LinuxAbi;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vdi_model::content::{self, Content};
use vdi_model::fault::FaultPlan;
use vdi_model::trace::Trace;

/// How long the calls in progress at the end of standard input may take.
pub const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Runs the secondary process until its standard input ends; an error
/// (library not loadable, a broken request) is returned to be printed.
pub fn run(library: &Path) -> Result<(), String> {
    let abi = LinuxAbi::load_from(library)
        .map_err(|e| format!("cannot load the library {}: {e}", library.display()))?;
    let abi: Arc<dyn Abi> = Arc::new(abi);
    let sh = Arc::new(Shared::new(abi.clone()));
    let set = abi
        .new_set()
        .map_err(|e| format!("cannot make a set object: {e}"))?;
    *sh.st() = CaseState::new(
        set,
        Trace::off(),
        1,
        ClientFaults::new(&FaultPlan::default()),
        Vec::new(),
    );
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let ready = Response {
        thread: wire::READY,
        reply: None,
        data: None,
        error: None,
    };
    let line = serde_json::to_string(&ready).map_err(|e| e.to_string())?;
    {
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(o, "{line}")
            .and_then(|()| o.flush())
            .map_err(|e| format!("secondary process: standard output: {e}"))?;
    }
    let mut workers: BTreeMap<u32, (Sender<Request>, JoinHandle<()>)> = BTreeMap::new();
    let mut input = std::io::stdin().lock();
    loop {
        let line = match wire::read_line(&mut input, "secondary process: standard input")? {
            Some(l) => l,
            // The parent is done with this process (or gone).
            None => exit_after(workers),
        };
        let req: Request = serde_json::from_str(&line)
            .map_err(|e| format!("secondary process: a request that is not understood: {e}"))?;
        if !workers.contains_key(&req.thread) {
            if workers.len() >= MAX_THREADS as usize {
                return Err(format!(
                    "secondary process: more than {MAX_THREADS} program threads (the protocol's bound)"
                ));
            }
            let tx = worker(req.thread, sh.clone(), out.clone())?;
            workers.insert(req.thread, tx);
        }
        if let Some((tx, _)) = workers.get(&req.thread) {
            let _ = tx.send(req);
        }
    }
}

/// The answer to one request.
fn answer(sh: &Shared, thread: u32, req: Request) -> Response {
    let mut resp = Response {
        thread,
        reply: None,
        data: None,
        error: None,
    };
    match (req.call, req.buffer) {
        (Some(call), None) => match perform(sh, &req.who, call) {
            Ok(r) => resp.reply = Some(WireReply::from(r)),
            Err(e) => resp.error = Some(e.to_string()),
        },
        (None, Some(op)) => match buffer_op(sh, op) {
            Ok(d) => resp.data = Some(d),
            Err(e) => resp.error = Some(e),
        },
        _ => resp.error = Some("a request needs exactly one of call and buffer".into()),
    }
    resp
}

/// Reads or fills a buffer the library handed this process.
fn buffer_op(sh: &Shared, op: BufferOp) -> Result<Content, String> {
    let (buf, len) = match &op {
        BufferOp::Read { buf, len } => (*buf, u64::from(*len)),
        BufferOp::Fill { buf, data } => (*buf, data.len()),
    };
    if len > u64::from(MAX_BUFFER_BYTES) {
        return Err(format!(
            "a buffer access of {len} bytes: at most {MAX_BUFFER_BYTES} (VDI's largest transfer)"
        ));
    }
    let addr = sh.st().buffer_address(buf.0).ok_or_else(|| {
        format!(
            "buffer {} was never handed to this process (MapBufferHandle or GetCommand first)",
            buf.0
        )
    })?;
    let n = len as usize;
    match op {
        BufferOp::Read { .. } => {
            // SAFETY: `addr` is a buffer of the set that the library mapped
            // into this process (MapBufferHandle or a command's buffer), in
            // shared memory that lives as long as the set; the requester
            // names a length within the buffer (its command's size).
            let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, n) };
            Ok(content::parse_tagged(bytes))
        }
        BufferOp::Fill { data, .. } => {
            // SAFETY: as for Read; the requester owns the command whose
            // buffer this is until it completes it.
            let s = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, n) };
            content::materialize(&data, s);
            Ok(Content::Empty)
        }
    }
}

/// Lets the calls in progress answer (at most [`EXIT_GRACE`]), then exits.
fn exit_after(workers: BTreeMap<u32, (Sender<Request>, JoinHandle<()>)>) -> ! {
    let dl = Instant::now() + EXIT_GRACE;
    let handles: Vec<_> = workers.into_values().map(|(_, h)| h).collect();
    while Instant::now() < dl && !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::process::exit(0)
}

/// The OS thread that performs program thread `thread`'s calls.
fn worker(
    thread: u32,
    sh: Arc<Shared>,
    out: Arc<Mutex<std::io::Stdout>>,
) -> Result<(Sender<Request>, JoinHandle<()>), String> {
    let (tx, rx) = mpsc::channel::<Request>();
    let h = std::thread::Builder::new()
        .name(format!("secondary-{thread}"))
        .spawn(move || {
            while let Ok(req) = rx.recv() {
                let resp = answer(&sh, thread, req);
                let Ok(line) = serde_json::to_string(&resp) else {
                    std::process::exit(2);
                };
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                if writeln!(o, "{line}").and_then(|()| o.flush()).is_err() {
                    // The parent is gone: nobody to answer.
                    std::process::exit(0);
                }
            }
        })
        .map_err(|e| format!("secondary process: cannot start a thread: {e}"))?;
    Ok((tx, h))
}
