//! Property: the TDS server's readers (`vdi_sqlserver::tds`: the packet
//! reader that reassembles messages under bounds, the PRELOGIN, LOGIN7 and
//! RPC parsers (one request or several in a message), the recognizers of
//! the queries answered with result sets, msdb's views included)
//! never panic on any bytes, the packet reader always stops
//! and never returns a message over its bounds, and a message the server
//! encodes reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdi_sqlserver::tds::packet::{self, Limits};
use vdi_sqlserver::tds::tables::{BackupRow, DbRow, Tables};
use vdi_sqlserver::tds::{login7, prelogin, query, rpc};

/// A database and a backup for the views to answer from.
struct Fixed;

impl Tables for Fixed {
    fn databases(&self) -> Vec<DbRow> {
        vec![DbRow {
            name: "sales".into(),
            id: 5,
            state_desc: "ONLINE".into(),
            recovery_model_desc: "FULL".into(),
        }]
    }
    fn backups(&self) -> Vec<BackupRow> {
        vec![BackupRow {
            number: 1,
            database_name: "sales".into(),
            kind: 'D',
            start_unix_ms: 1,
            finish_unix_ms: u64::MAX,
            first_lsn: u64::MAX,
            last_lsn: 0,
            checkpoint_lsn: 1,
            database_backup_lsn: 0,
            copy_only: true,
            checksums: false,
            size: u64::MAX,
            server_name: "FUZZ".into(),
            devices: vec![Some("vd".into()), None],
        }]
    }
}

fuzz_target!(|bytes: &[u8]| {
    for limits in [Limits::LOGIN, Limits::session(512)] {
        let mut r = bytes;
        let mut messages = 0;
        while let Ok(Some(m)) = packet::read_message(&mut r, &limits) {
            assert!(m.payload.len() <= limits.bytes_max);
            messages += 1;
            assert!(messages <= bytes.len(), "the reader does not stop");
        }
    }
    let _ = prelogin::parse(bytes);
    if let Ok(l) = login7::parse(bytes) {
        for f in [&l.user, &l.password, &l.database, &l.host, &l.app] {
            assert!(f.chars().count() <= login7::FIELD_CHARS_MAX);
        }
    }
    if let Ok(rs) = rpc::parse_all(bytes) {
        assert!(!rs.is_empty() && rs.len() <= rpc::RPCS_MAX);
        for r in rs {
            assert!(r.params.len() <= rpc::PARAMS_MAX);
            let _ = r.proc();
            let _ = rpc::with_values("X", "@a int, @b nvarchar(9)", &r.params);
            let _ = rpc::inline_values(
                "SELECT @a, '@b', @b FROM t",
                "@a int, @b nvarchar(9)",
                &r.params,
            );
            for p in &r.params {
                let mut o = Vec::new();
                vdi_sqlserver::tds::token::return_value(&mut o, 0, &p.name, &p.type_info, &p.value);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let cx = query::Context {
            spid: 51,
            server_name: "FUZZ",
            database: "master",
            tables: &Fixed,
        };
        if let Some(Ok(rs)) = query::answer(text, &cx) {
            query::encode(&mut Vec::new(), &rs);
        }
    }
    let wire = packet::encode_message(packet::kind::REPLY, bytes, 512, 51);
    let back = packet::read_message(&mut &wire[..], &Limits::session(512))
        .expect("an encoded message reads back")
        .expect("a message");
    assert_eq!(back.payload, bytes);
});
