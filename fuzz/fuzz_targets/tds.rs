//! Property: the TDS server's readers (`vdi_sqlserver::tds`: the packet
//! reader that reassembles messages under bounds, the PRELOGIN, LOGIN7 and
//! RPC parsers, the recognizer of the queries answered with result sets)
//! never panic on any bytes, the packet reader always stops
//! and never returns a message over its bounds, and a message the server
//! encodes reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdi_sqlserver::tds::packet::{self, Limits};
use vdi_sqlserver::tds::{login7, prelogin, query, rpc};

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
    if let Ok(r) = rpc::parse(bytes) {
        let _ = r.proc();
        let _ = rpc::with_values("X", "@a int, @b nvarchar(9)", &r.params);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let cx = query::Context {
            spid: 51,
            server_name: "FUZZ",
            database: "master",
            databases: vec!["sales".into()],
        };
        if let Some(rs) = query::answer(text, &cx) {
            query::encode(&mut Vec::new(), &rs);
        }
    }
    let wire = packet::encode_message(packet::kind::REPLY, bytes, 512, 51);
    let back = packet::read_message(&mut &wire[..], &Limits::session(512))
        .expect("an encoded message reads back")
        .expect("a message");
    assert_eq!(back.payload, bytes);
});
