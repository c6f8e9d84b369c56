//! Property: the T-SQL parser (`vdi_sqlserver::tsql::parse_batch`) never panics on
//! any UTF-8 text, and every BACKUP / RESTORE statement it accepts prints
//! (`Statement::to_tsql`) as text that parses back to exactly that one
//! statement (its WITH options beyond the transfer options are not
//! printed, so the comparison leaves them and the plan out).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdi_model::statement::ServerPlan;
use vdi_sqlserver::tsql::{ParsedStatement, With, parse_batch};

fuzz_target!(|text: &str| {
    let Ok(statements) = parse_batch(text) else {
        return;
    };
    for st in statements {
        if let ParsedStatement::Run(mut s, _) = st {
            s.plan = ServerPlan::default();
            let printed = s.to_tsql();
            match parse_batch(&printed) {
                Ok(again) => assert_eq!(
                    again,
                    vec![ParsedStatement::Run(s.clone(), With::default())],
                    "{printed:?} (printed from a statement of {text:?}) parses to another statement"
                ),
                Err(e) => {
                    panic!("{printed:?} (printed from a statement of {text:?}) does not parse: {e}")
                }
            }
        }
    }
});
