use super::*;
use crate::msg::CmdId;
use std::collections::BTreeMap;
use vdi_spec::Features;

#[derive(Default)]
struct Ns(BTreeMap<String, VdConfig>);
impl Namespace for Ns {
    fn claim(&mut self, name: &str, cfg: &VdConfig) -> bool {
        if self.0.contains_key(name) {
            return false;
        }
        self.0.insert(name.to_string(), *cfg);
        true
    }
    fn release(&mut self, name: &str) {
        self.0.remove(name);
    }
}

fn cmd(id: u64, dev: DevIx, code: CommandCode) -> Cmd {
    Cmd {
        id: CmdId(id),
        dev,
        code,
        size: 512,
        position: 0,
        buffer: Some(BufId(id as u32)),
        data: Content::Empty,
    }
}

fn configured(n: u32) -> (ClientSet, Ns) {
    let mut c = ClientSet::new(Arc::new(Profile::default()));
    let mut ns = Ns::default();
    c.create("set", &VdConfig::client(n, Features::LikePipe), &mut ns)
        .result
        .unwrap();
    let names = (0..n)
        .map(|i| {
            if i == 0 {
                "set".to_string()
            } else {
                format!("d{i}")
            }
        })
        .collect();
    c.deliver(ToClient::Configured {
        cfg: VdConfig::client(n, Features::LikePipe),
        devices: names,
    });
    assert!(matches!(
        c.get_configuration(),
        Blocking::Ready(Ret { result: Ok(_), .. })
    ));
    (c, ns)
}

fn ready<T>(p: Blocking<Ret<T>>) -> Ret<T> {
    match p {
        Blocking::Ready(r) => r,
        Blocking::Pending => panic!("pending"),
    }
}

/// close.not-open
#[test]
fn close_not_open() {
    let mut c = ClientSet::new(Arc::new(Profile::default()));
    let r = c.close(&mut Ns::default());
    assert_eq!(r.code(), Hresult::VD_E_PROTOCOL);
    assert_eq!(r.clause, id::CLOSE_NOT_OPEN);
    assert!(c.out.is_empty(), "no action taken");
}

/// close.devices-open, close.invalidates-devices, close.reuse
#[test]
fn close_devices_open_then_reuse() {
    let (mut c, mut ns) = configured(2);
    let h = c.open_device("set").result.unwrap();
    let r = c.close(&mut ns);
    assert_eq!(r.code(), Hresult::VD_E_OPEN);
    assert_eq!(c.out, vec![ToServer::Abort, ToServer::Closed]);
    assert_eq!(c.state(), ClientState::Dne);
    assert_eq!(ready(c.get_command(h)).code(), Hresult::VD_E_PROTOCOL);
    let r = c.create("set", &VdConfig::client(1, Features::LikePipe), &mut ns);
    assert_eq!(r.clause, id::CLOSE_REUSE);
    assert_eq!(
        ready(c.get_command(h)).clause,
        id::CLOSE_INVALIDATES_DEVICES
    );
}

/// open-device.all-open, open-device.invalid-name, open-device.already-open
#[test]
fn open_device_rules() {
    let (mut c, _ns) = configured(2);
    assert_eq!(c.open_device("nope").code(), Hresult::VD_E_INVALID);
    c.open_device("set").result.unwrap();
    assert_eq!(c.open_device("set").code(), Hresult::VD_E_PROTOCOL);
    c.open_device("d1").result.unwrap();
    assert_eq!(c.open_device("d1").code(), Hresult::VD_E_OPEN);
}

/// io-error.enter, io-error.reject-new, io-error.clear-error-after-outstanding
#[test]
fn io_error_protocol() {
    let (mut c, _ns) = configured(1);
    let h = c.open_device("set").result.unwrap();
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    c.deliver(ToClient::Command(cmd(2, 0, CommandCode::Write)));
    c.deliver(ToClient::Command(cmd(3, 0, CommandCode::Write)));
    let a = ready(c.get_command(h)).result.unwrap();
    let b = ready(c.get_command(h)).result.unwrap();
    c.out.clear();
    c.complete_command(h, &a, Win32::ERROR_DISK_FULL, 0, 0, Content::Empty)
        .result
        .unwrap();
    // cmd 3 was queued: auto-completed with ERROR_IO_DEVICE.
    assert!(matches!(
        &c.out[1],
        ToServer::Completed(Completion {
            auto: true,
            code: Win32::ERROR_IO_DEVICE,
            ..
        })
    ));
    c.deliver(ToClient::Command(cmd(4, 0, CommandCode::ClearError)));
    assert_eq!(
        c.get_command(h),
        Blocking::Pending,
        "ClearError held while b is outstanding"
    );
    c.complete_command(h, &b, Win32::ERROR_SUCCESS, 512, 0, Content::Empty)
        .result
        .unwrap();
    let ce = ready(c.get_command(h)).result.unwrap();
    assert_eq!(ce.code, CommandCode::ClearError);
    c.complete_command(h, &ce, Win32::ERROR_SUCCESS, 0, 0, Content::Empty)
        .result
        .unwrap();
    assert!(!c.io_error(0));
}

/// complete-command.invalid, complete-command.read-only-block
#[test]
fn complete_command_checks() {
    let (mut c, _ns) = configured(1);
    c.tracing = true;
    let h = c.open_device("set").result.unwrap();
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    let a = ready(c.get_command(h)).result.unwrap();
    let mut t = a.clone();
    t.size = 1;
    assert_eq!(
        c.complete_command(h, &t, Win32::ERROR_SUCCESS, 1, 0, Content::Empty)
            .clause,
        id::COMPLETE_COMMAND_READ_ONLY_BLOCK
    );
    assert_eq!(c.notes[0].clause, id::COMPLETE_COMMAND_READ_ONLY_BLOCK);
    let r = c.complete_command(h, &a, Win32::ERROR_SUCCESS, 512, 0, Content::Empty);
    assert_eq!(r.code(), Hresult::VD_E_INVALID, "already completed");
}

/// term.normally-terminated, get-command.after-device-closed
#[test]
fn normal_termination_per_device() {
    let (mut c, mut ns) = configured(2);
    let h0 = c.open_device("set").result.unwrap();
    let h1 = c.open_device("d1").result.unwrap();
    c.deliver(ToClient::CloseDevice { dev: 0 });
    assert_eq!(ready(c.get_command(h0)).clause, id::GET_COMMAND_CLOSE);
    assert_eq!(c.state(), ClientState::Active);
    assert_eq!(
        ready(c.get_command(h0)).clause,
        id::GET_COMMAND_AFTER_DEVICE_CLOSED
    );
    c.deliver(ToClient::CloseDevice { dev: 1 });
    assert_eq!(ready(c.get_command(h1)).code(), Hresult::VD_E_CLOSE);
    assert_eq!(c.state(), ClientState::NormallyTerminated);
    let r = c.close(&mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::CLOSE_ALL_FINISHED)
    );
}

/// create-ex.instance-name, create-ex.empty-instance, create.illegal-name
#[test]
fn create_ex_instances_and_names() {
    let mut c = ClientSet::new(Arc::new(Profile::default()));
    let mut ns = Ns::default();
    let cfg = VdConfig::client(1, Features::LikePipe);
    assert_eq!(
        c.create_ex(Some("NOPE"), "a", &cfg, &mut ns).code(),
        Hresult::VD_E_INSTANCE_NAME
    );
    assert_eq!(
        c.create_ex(Some(""), "a", &cfg, &mut ns).code(),
        Hresult::VD_E_INSTANCE_NAME
    );
    assert_eq!(
        c.create_ex(None, "a\\b", &cfg, &mut ns).code(),
        Hresult::VD_E_INVALID
    );
    assert_eq!(
        c.create_ex(Some("mssqlserver"), "a", &cfg, &mut ns).code(),
        Hresult::NOERROR
    );
    let mut other = ClientSet::new(Arc::new(Profile::default()));
    assert_eq!(other.create("a", &cfg, &mut ns).code(), Hresult::VD_E_BUSY);
}

/// A server that names more devices than deviceCount is not believed
/// (clause `config.device-count`; found by the `shm` fuzz target): the set
/// stays unconfigured.
#[test]
fn a_configuration_with_too_many_devices_is_refused() {
    let mut c = ClientSet::new(Arc::new(Profile::default()));
    let mut ns = Ns::default();
    c.create("set", &VdConfig::client(1, Features::LikePipe), &mut ns)
        .result
        .unwrap();
    c.deliver(ToClient::Configured {
        cfg: VdConfig::client(2, Features::LikePipe),
        devices: vec!["set".into(), "d1".into()],
    });
    assert_eq!(c.get_configuration(), Blocking::Pending);
    assert_eq!(c.state(), ClientState::Configurable);
}

/// A command whose id or buffer the client still holds is not believed
/// (found by the `shm` fuzz target).
#[test]
fn a_command_held_twice_is_refused() {
    let (mut c, _ns) = configured(2);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    c.deliver(ToClient::Command(cmd(1, 1, CommandCode::Write)));
    let mut other_buffer = cmd(2, 1, CommandCode::Write);
    other_buffer.buffer = Some(BufId(1));
    c.deliver(ToClient::Command(other_buffer));
    assert_eq!(c.devices[0].queue.len(), 1);
    assert!(c.devices[1].queue.is_empty());
}

/// buffer-handle.roundtrip across processes: in a process's view of a
/// shared set, a handle to the buffer of a command another process fetched
/// maps (the buffer is the set's); an unshared view knows only what it
/// fetched.
#[test]
fn a_shared_view_maps_the_buffers_of_commands_it_did_not_fetch() {
    let (mut lone, _ns) = configured(2);
    lone.deliver(ToClient::Command(cmd(7, 0, CommandCode::Write)));
    let r = lone.map_buffer_handle(8);
    assert_eq!(r.result, Err(Hresult::VD_E_INVALID));
    let (mut view, _ns) = configured(2);
    view.share_devices();
    view.deliver(ToClient::Command(cmd(7, 0, CommandCode::Write)));
    let r = view.map_buffer_handle(8);
    assert_eq!(r.result, Ok(BufId(7)));
    assert_eq!(r.clause, id::BUFFER_HANDLE_ROUNDTRIP);
    assert_eq!(view.get_buffer_handle(Some(BufId(7))).result, Ok(8));
}
