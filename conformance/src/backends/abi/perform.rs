//! One client call through an [`Abi`](super::Abi), on the calling worker
//! thread: the script's (or program's) [`Call`] becomes the library call,
//! the library's answer becomes a [`Reply`]. The state lock is never held
//! across a call into the library.
//!
//! GetCommand hands back a pointer to a library-owned `VDC_Command` block;
//! the driver keeps a map from a local command id to that block and builds
//! the [`Cmd`] the caller sees from the block's fields; a Write's data is
//! parsed from the real buffer so media checks work, and a Read's data is
//! materialised into the buffer before CompleteCommand. A caller that
//! "tampers" with a command (a size that differs from the block) writes the
//! new field into the block, as a careless client would.

use super::shared::{OUT_UNSET, Ptr, Shared, reply};
use crate::backend::BackendError;
use vdi_model::call::{Call, Reply, Value};
use vdi_model::client::DeviceHandle;
use vdi_model::content::{self, Content};
use vdi_model::msg::{Cmd, CmdId, Timeout};
use vdi_spec::{CommandCode, Hresult, VdConfig, VdcCommand, Win32};

/// Performs `call` on thread `who`.
pub fn perform(sh: &Shared, who: &str, call: Call) -> Result<Reply, BackendError> {
    let abi = &sh.abi;
    let set = sh.st().set;
    let method = call.method();
    let r = match call {
        Call::Create { name, cfg } => {
            let code = abi.create(set, None, &name, &cfg)?;
            sh.created(code, name);
            reply(code, Value::None)
        }
        Call::CreateEx {
            instance,
            name,
            cfg,
        } => {
            let code = abi.create(set, Some(instance.as_deref()), &name, &cfg)?;
            sh.created(code, name);
            reply(code, Value::None)
        }
        Call::GetConfiguration { timeout } => {
            let mut cfg = VdConfig::default();
            let code = abi.get_configuration(set, timeout, &mut cfg);
            if code == Hresult::NOERROR {
                reply(code, Value::Config(cfg))
            } else {
                reply(code, Value::None)
            }
        }
        Call::OpenDevice { name } => {
            let (code, dev) = abi.open_device(set, &name);
            match (code == Hresult::NOERROR, dev) {
                (true, 0 | OUT_UNSET) => {
                    return Err(BackendError::Failed(format!(
                        "OpenDevice({name}) returned NOERROR without setting *ppVirtualDevice to a device"
                    )));
                }
                (true, dev) => reply(code, Value::Device(sh.opened(&name, dev))),
                (false, 0) => reply(code, Value::None),
                (false, dev) => {
                    return Err(BackendError::Failed(format!(
                        "OpenDevice({name}) returned {code} and left *ppVirtualDevice = {dev:#x}, not NULL (clause open-device.null-on-failure)"
                    )));
                }
            }
        }
        Call::Close => reply(abi.close(set), Value::None),
        Call::SignalAbort => reply(abi.signal_abort(set), Value::None),
        Call::OpenInSecondary { name, .. } => reply(abi.open_in_secondary(set, &name), Value::None),
        Call::GetBufferHandle { buf } => {
            let addr = match buf {
                None => 0,
                Some(b) => sh.st().buffer_address(b.0).unwrap_or(b.0 as Ptr),
            };
            let (code, h) = abi.get_buffer_handle(set, addr);
            if code == Hresult::NOERROR {
                reply(code, Value::Handle(h))
            } else {
                reply(code, Value::None)
            }
        }
        Call::MapBufferHandle { handle } => {
            let (code, addr) = abi.map_buffer_handle(set, handle);
            if code == Hresult::NOERROR {
                let id = sh.st().buf_id(addr);
                reply(code, id.map_or(Value::None, Value::Buffer))
            } else {
                reply(code, Value::None)
            }
        }
        Call::GetCommand { dev, timeout } => get_command(sh, who, dev, timeout),
        Call::CompleteCommand {
            dev,
            cmd,
            code,
            bytes,
            position,
            data,
        } => complete_command(sh, dev, &cmd, (code, bytes, position), &data),
    };
    let detail = format!("-> {}", r.code);
    sh.st().emit(who, method.name(), detail, None);
    Ok(r)
}

fn get_command(sh: &Shared, who: &str, dev: DeviceHandle, timeout: Timeout) -> Reply {
    let d = sh.st().device(dev);
    let (code, block) = sh.abi.get_command(d, timeout);
    if code != Hresult::NOERROR || block == 0 {
        return reply(code, Value::None);
    }
    // SAFETY: the library returned NOERROR with this block: it points to a
    // live VDC_Command owned by the library until completed (read only).
    let b: VdcCommand = unsafe { std::ptr::read(block as *const VdcCommand) };
    let kind = CommandCode::from_u32(b.command_code).unwrap_or(CommandCode::Write);
    let data = if kind == CommandCode::Write && !b.buffer.is_null() {
        // SAFETY: a Write's buffer holds `size` bytes the server wrote, the
        // client's to read until CompleteCommand.
        let bytes = unsafe { std::slice::from_raw_parts(b.buffer, b.size as usize) };
        content::parse_tagged(bytes)
    } else {
        Content::Empty
    };
    let cmd = {
        let mut st = sh.st();
        let id = st.next_command_id();
        let cmd = Cmd {
            id: CmdId(id),
            dev: dev.index,
            code: kind,
            size: b.size,
            position: b.position,
            buffer: st.buf_id(b.buffer as Ptr),
            data,
        };
        st.fetched_block(id, d, block, cmd.clone());
        cmd
    };
    sh.fetched(who, &cmd);
    reply(code, Value::Command(cmd))
}

fn complete_command(
    sh: &Shared,
    dev: DeviceHandle,
    cmd: &Cmd,
    (code, bytes, position): (Win32, u64, u64),
    data: &Content,
) -> Reply {
    let (code, bytes) = sh.completion(cmd.id, code, bytes);
    let (d, known, outstanding) = {
        let mut st = sh.st();
        let known = st.block_of(cmd.id.0);
        let outstanding = known.is_some() && st.hand_back(cmd.id.0);
        (st.device(dev), known, outstanding)
    };
    let block = match &known {
        Some((block, first)) => {
            if first.code == CommandCode::Read
                && outstanding
                && !data.is_empty()
                && let Some(buf) = first.buffer.and_then(|b| sh.st().buffer_address(b.0))
            {
                let n = data.len().min(u64::from(first.size)) as usize;
                // SAFETY: the Read is outstanding in the current set
                // incarnation, so its buffer is live and holds `size` bytes
                // that are the client's to fill until CompleteCommand.
                let s = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n) };
                content::materialize(&data.slice(0, n as u64), s);
            }
            if cmd.size != first.size || cmd.position != first.position {
                // A careless client writing into the read-only block.
                // SAFETY: the block is live (outstanding, or kept by the
                // library after completion) and 24 bytes long.
                unsafe {
                    let p = *block as *mut VdcCommand;
                    std::ptr::addr_of_mut!((*p).size).write(cmd.size);
                    std::ptr::addr_of_mut!((*p).position).write(cmd.position);
                }
            }
            *block
        }
        None => 0,
    };
    reply(
        sh.abi.complete_command(d, block, code.0, bytes, position),
        Value::None,
    )
}

/// The reference device loop (what a script's `drain` does), on the
/// driver's media: GetCommand, perform, CompleteCommand, until something
/// other than NOERROR.
pub fn drain_loop(sh: &Shared, who: &str, dev: DeviceHandle, timeout: Timeout) -> Reply {
    let mut timeouts = 0u32;
    loop {
        let r = match perform(sh, who, Call::GetCommand { dev, timeout }) {
            Ok(r) => r,
            Err(_) => return reply(Hresult::VD_E_UNEXPECTED, Value::None),
        };
        let c = match r.value {
            Value::Command(c) => c,
            _ if r.code == Hresult::VD_E_TIMEOUT && timeouts < 10_000 => {
                timeouts += 1;
                continue;
            }
            _ => return reply(r.code, Value::None),
        };
        let (code, bytes, data) = sh.st().reference_answer(&c);
        let cr = perform(
            sh,
            who,
            Call::CompleteCommand {
                dev,
                position: c.position,
                cmd: c,
                code,
                bytes,
                data,
            },
        );
        match cr {
            Ok(r) if r.code == Hresult::NOERROR => {}
            Ok(r) => return reply(r.code, Value::None),
            Err(_) => return reply(Hresult::VD_E_UNEXPECTED, Value::None),
        }
    }
}
