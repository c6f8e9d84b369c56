//! The SQL Server messages the server half reports in a statement's outcome
//! (clause `server.outcome-messages`). One function per message number, so
//! every text lives in one place.
//!
//! Numbers and texts follow what SQL Server prints for the same situation
//! where the reference or the field notes show it (3013, 3014, 3201, 3202,
//! 3203, 3204, 3231, 3241, 3262, 4035, 18210). Where the reference shows no
//! text (invalid WITH options, a deviceCount mismatch, no backup to restore)
//! the message is a model choice, marked so on its function.

use crate::outcome::SqlMessage;
use crate::statement::StatementKind;
use vdi_spec::Win32;

/// Msg 3013: the last message of every failed statement.
pub fn terminating(kind: StatementKind) -> SqlMessage {
    SqlMessage::error(3013, format!("{} is terminating abnormally.", kind.verb()))
}

/// Msg 3201: the server could not open the set named by the first
/// VIRTUAL_DEVICE clause (clause `server.open-missing-set`).
pub fn cannot_open(dev: &str) -> SqlMessage {
    SqlMessage::error(
        3201,
        format!(
            "Cannot open backup device '{dev}'. Operating system error 0x80070002(The system cannot find the file specified.)."
        ),
    )
}

/// Msg 3202: a Write, Flush or Complete failed (or was vetoed).
pub fn write_failed(dev: &str, code: Win32) -> SqlMessage {
    SqlMessage::error(
        3202,
        format!("Write on \"{dev}\" failed: {}({})", code.0, code.message()),
    )
}

/// Msg 3203: a Read failed, or the stream ended early.
pub fn read_failed(dev: &str, code: Win32) -> SqlMessage {
    SqlMessage::error(
        3203,
        format!("Read on \"{dev}\" failed: {}({})", code.0, code.message()),
    )
}

/// Msg 3202/3203 for a transfer completed with ERROR_SUCCESS but fewer bytes
/// than asked (clause `command.short-transfer`). The tail after the standard
/// text is a model choice.
pub fn short_transfer(write: bool, dev: &str, bytes: u64, size: u32) -> SqlMessage {
    let (n, verb) = if write {
        (3202, "Write")
    } else {
        (3203, "Read")
    };
    SqlMessage::error(
        n,
        format!(
            "{verb} on \"{dev}\" failed: 0(The operation completed successfully.) Only {bytes} of {size} bytes were transferred."
        ),
    )
}

/// Msg 3204: a server-side abort (KILL).
pub fn aborted() -> SqlMessage {
    SqlMessage::error(3204, "The backup or restore was aborted.")
}

/// Msg 3231: the restore names a different number of devices than the media
/// set has families.
pub fn family_count(dev: &str, families: usize, devices: usize) -> SqlMessage {
    SqlMessage::error(
        3231,
        format!(
            "The media loaded on \"{dev}\" is formatted to support {families} media families, but {devices} media families are expected according to the backup device specification."
        ),
    )
}

/// Msg 3241: the bytes read are not the media family that was written.
pub fn bad_family(dev: &str) -> SqlMessage {
    SqlMessage::error(
        3241,
        format!(
            "The media family on device '{dev}' is incorrectly formed. SQL Server cannot process this media family."
        ),
    )
}

/// Msg 3183: a backup taken WITH CHECKSUM read back with a damaged page
/// (the page's number within its family's data, file 1).
pub fn damaged_page(page: u64, db: &str) -> SqlMessage {
    SqlMessage::error(
        3183,
        format!(
            "RESTORE detected an error on page (1:{page}) in database \"{db}\" as read from the backup set."
        ),
    )
}

/// Msg 3254: the device holds no media at all (its first read found EOF).
pub fn empty_volume(dev: &str) -> SqlMessage {
    SqlMessage::error(3254, format!("The volume on device '{dev}' is empty."))
}

/// Msg 3132: fewer devices than the media set has families.
pub fn missing_families(families: usize, devices: usize) -> SqlMessage {
    SqlMessage::error(
        3132,
        format!(
            "The media set has {families} media families but only {devices} are provided. All members must be provided."
        ),
    )
}

/// Msg 3227: the same family given on two devices.
pub fn duplicate_family(dev: &str, family: u16, other: &str) -> SqlMessage {
    SqlMessage::error(
        3227,
        format!(
            "The backup media on \"{dev}\" is part of media family {family} which has already been processed on \"{other}\". Ensure that backup devices are correctly specified and loaded."
        ),
    )
}

/// Msg 3135 (INFERRED number and text): the media hold a backup of a type
/// this RESTORE cannot use (a log backup for RESTORE DATABASE, a database
/// backup for RESTORE LOG).
pub fn wrong_backup_type(made_by: &str, restore: &str) -> SqlMessage {
    SqlMessage::error(
        3135,
        format!(
            "The backup set in file 1 was created by {made_by} and cannot be used for this restore operation ({restore})."
        ),
    )
}

/// Model choice (no text in the reference): RESTORE of a database with no
/// backup in this world's msdb. Number 3206 is SQL Server's "no entry for
/// backup device" message, the closest real one.
pub fn no_backup(db: &str) -> SqlMessage {
    SqlMessage::error(
        3206,
        format!("No backup set of database '{db}' is recorded in msdb on this server."),
    )
}

/// Model choice: invalid WITH options (BLOCKSIZE, MAXTRANSFERSIZE,
/// BUFFERCOUNT); the text is the option check's own.
pub fn bad_option(text: &str) -> SqlMessage {
    SqlMessage::error(
        3217,
        format!("Invalid value specified for a WITH option: {text}."),
    )
}

/// Model text: RESTORE WITH MEDIANAME on media whose name differs (clause
/// `tape.media-name`); SQL Server refuses such media, its exact message
/// is not in the reference, so number and text are the model's (Msg 3264,
/// SQL Server's "operation did not proceed far enough").
pub fn media_name(dev: &str, want: &str, found: &str) -> SqlMessage {
    SqlMessage::error(
        3264,
        format!(
            "The media name on backup device '{dev}' is '{found}', not the MEDIANAME '{want}' the statement names. Use the media set's name, or leave MEDIANAME out."
        ),
    )
}

/// Msg 18210: a VDI call failed with `code`; `op` is the server routine
/// (`BackupVirtualDeviceFile::RequestDurableMedia`), `what` the operation
/// ("Flush", "write", or empty).
pub fn vdi_failure(op: &str, what: &str, dev: &str, code: Win32) -> SqlMessage {
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what} ")
    };
    SqlMessage::error(
        18210,
        format!(
            "{op}: {what}failure on backup device '{dev}'. Operating system error {}({}).",
            code.0,
            code.message()
        ),
    )
}

/// Model choice: the statement's VIRTUAL_DEVICE count differs from the
/// set's deviceCount (clause `stripe.device-count-mismatch`), reported as the
/// VDI open failure SQL Server would log.
pub fn device_count(dev: &str, clauses: usize, device_count: u32) -> SqlMessage {
    SqlMessage::error(
        18210,
        format!(
            "BackupVirtualDeviceSet::Initialize: Open failure on backup device '{dev}'. Operating system error 0x80770006(the statement names {clauses} virtual devices but the set has deviceCount {device_count})."
        ),
    )
}

/// Msg 4035: pages processed for the database.
pub fn processed(pages: u64, db: &str, file: u32) -> SqlMessage {
    SqlMessage::info(
        4035,
        format!("Processed {pages} pages for database '{db}', file '{db}' on file {file}."),
    )
}

/// Msg 3014: the success line clients look for.
pub fn success(verb: &str, pages: u64, bytes: u64, ms: u64) -> SqlMessage {
    // MB/s with three decimals in integer arithmetic; a zero duration counts
    // as one millisecond.
    let ms_div = u128::from(ms.max(1));
    let milli_mbps = u128::from(bytes) * 1_000_000 / (1_048_576 * ms_div);
    SqlMessage::info(
        3014,
        format!(
            "{verb} successfully processed {pages} pages in {}.{:03} seconds ({}.{:03} MB/sec).",
            ms / 1000,
            ms % 1000,
            milli_mbps / 1000,
            milli_mbps % 1000
        ),
    )
}

/// Msg 3262: RESTORE VERIFYONLY found the backup set valid.
pub fn verify_ok() -> SqlMessage {
    SqlMessage::info(3262, "The backup set on file 1 is valid.")
}

/// Pages of 8 KiB, rounded up.
pub fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(8192)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_text_handles_zero_time() {
        let m = success("BACKUP DATABASE", 128, 1 << 20, 0);
        assert_eq!(
            m.text,
            "BACKUP DATABASE successfully processed 128 pages in 0.000 seconds (1000.000 MB/sec)."
        );
        let m = success("BACKUP DATABASE", 128, 1 << 20, 2500);
        assert!(
            m.text.ends_with("in 2.500 seconds (0.400 MB/sec)."),
            "{}",
            m.text
        );
    }

    #[test]
    fn failure_texts() {
        assert_eq!(
            write_failed("d", Win32::ERROR_DISK_FULL).text,
            "Write on \"d\" failed: 112(There is not enough space on the disk.)"
        );
        let m = vdi_failure(
            "BackupVirtualDeviceFile::RequestDurableMedia",
            "Flush",
            "d",
            Win32::ERROR_OPERATION_ABORTED,
        );
        assert!(m.text.starts_with(
            "BackupVirtualDeviceFile::RequestDurableMedia: Flush failure on backup device 'd'. Operating system error 995(The I/O"
        ));
        let m = vdi_failure(
            "BackupVirtualDeviceSet::AllocateBuffer",
            "",
            "d",
            Win32(995),
        );
        assert!(
            m.text
                .starts_with("BackupVirtualDeviceSet::AllocateBuffer: failure on")
        );
        assert_eq!(pages(0), 0);
        assert_eq!(pages(8193), 2);
    }
}
