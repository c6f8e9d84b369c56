//! Invariant: every call returns a code documented for its method and the
//! set's state — the client transition table's cell, the method's own page
//! (except the codes whose meaning depends on the state), or the profile
//! parameter that decides an open choice.

use super::Violation;
use vdi_spec::id;
use vdi_spec::{ClauseId, ClientState, Hresult, Profile, TableMethod};

/// Whether `code`, returned by `m` in state `st` under the decision of
/// `clause`, is documented.
#[inline]
pub fn documented(
    p: &Profile,
    m: TableMethod,
    st: ClientState,
    code: Hresult,
    clause: ClauseId,
) -> bool {
    vdi_spec::tables::client_cell(m, st).allows(code)
        || (vdi_spec::tables::documented_codes(m).contains(&code)
            && !matches!(
                code,
                Hresult::NOERROR
                    | Hresult::VD_E_PROTOCOL
                    | Hresult::VD_E_ABORT
                    | Hresult::VD_E_CLOSE
            ))
        || (clause == id::CLOSE_INVALIDATES_DEVICES && code == p.use_after_close_code)
        || (clause == id::GET_COMMAND_AFTER_DEVICE_CLOSED && code == Hresult::VD_E_PROTOCOL)
        || (clause == id::CREATE_ILLEGAL_NAME && code == p.create_illegal_name_code)
        || (clause == id::CREATE_NAME_IN_USE && code == p.create_name_in_use_code)
}

/// The violation of a call that returned an undocumented code, if it did.
#[inline]
pub fn check(
    p: &Profile,
    cell: (TableMethod, ClientState),
    code: Hresult,
    clause: ClauseId,
) -> Option<Violation> {
    let (m, st) = cell;
    if documented(p, m, st, code, clause) {
        return None;
    }
    Some(Violation {
        clause: vdi_spec::tables::client_cell(m, st).clause.to_string(),
        what: format!(
            "{} in {} returned {code}, which is documented neither for the method nor the state",
            m.name(),
            st.name()
        ),
        at: None,
    })
}
