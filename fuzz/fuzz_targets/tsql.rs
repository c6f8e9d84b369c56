//! Property: the T-SQL parser (`vdi_sqlserver::tsql::parse_batch`) never panics on
//! any UTF-8 text, and every BACKUP / RESTORE statement it accepts prints
//! (`Statement::to_tsql`) as text that parses back to exactly that one
//! statement.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdi_sqlserver::tsql::{ParsedStatement, parse_batch};

fuzz_target!(|text: &str| {
    let Ok(statements) = parse_batch(text) else {
        return;
    };
    for st in statements {
        if let ParsedStatement::Run(s) = st {
            let printed = s.to_tsql();
            match parse_batch(&printed) {
                Ok(again) => assert_eq!(
                    again,
                    vec![ParsedStatement::Run(s.clone())],
                    "{printed:?} (printed from a statement of {text:?}) parses to another statement"
                ),
                Err(e) => {
                    panic!("{printed:?} (printed from a statement of {text:?}) does not parse: {e}")
                }
            }
        }
    }
});
