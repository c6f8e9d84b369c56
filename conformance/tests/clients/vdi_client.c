/*
 * vdi_client.c - a VDI backup program in C over the COM-shaped interface,
 * started in READY-LINE MODE: it creates the virtual device set, prints
 * exactly "READY" on standard output, and leaves the BACKUP or RESTORE
 * statement to whoever started it (a scheduler, a script, the test
 * harness). It learns the statement's outcome only from the VDI side:
 * VD_E_CLOSE on every device is success, VD_E_ABORT is failure.
 *
 *   vdi_client <backup|restore> <database> <device> <devices> <file> <server>
 *
 *   device   the set's name, also the first device's; device k > 0 is
 *            "<device>-dev<k>"
 *   devices  how many devices (1..64)
 *   file     the media: device 0 uses <file>, device k > 0 uses <file>.<k>;
 *            a backup creates (truncates) them, a restore reads them
 *   server   unused in this mode (the statement is sent by someone else);
 *            accepted so that both start modes share one command line
 *
 * Exit status: 0 the program believes the operation succeeded, 1 it
 * believes it failed, 2 bad usage. Progress goes to standard error;
 * standard output carries only the READY line. Standard input is never
 * read (its end is not a reason to stop).
 *
 * Built with -DFLAW_<NAME> it carries one product bug (see README.md in
 * this directory): TIMEOUT_FATAL, CLOSE_EARLY, FLUSH_UNANSWERED,
 * SHORT_READ_SUCCESS, SUCCESS_ALWAYS, TIMEOUT_SECONDS, NO_CLOSE,
 * TAMPER_BLOCK, WAIT_AFTER_ABORT, CLOSE_IS_SUCCESS; and for the device
 * shapes: IGNORES_POSITION (disk: Writes and Reads at a running cursor),
 * NO_END_OF_FILE (disk: a Flush does not set end-of-file),
 * IGNORES_FILEMARKS (tape: WriteMark acknowledged but not written, Reads
 * run across filemarks), SNAPSHOT_UNANSWERED (VDC_Snapshot never
 * completed), VOLUME_FULL_FATAL (removable: a full volume fails the Write
 * with ERROR_DISK_FULL instead of ERROR_END_OF_MEDIA).
 *
 * Device shapes (environment):
 *   VDICLIENT_MODE=pipe   VDF_LikePipe (the default): the media are a stream
 *   VDICLIENT_MODE=disk   VDF_LikeDisk: each Write/Read at the command's
 *                         position in the file; a backup writes over the
 *                         file and each Flush sets its end at the furthest
 *                         byte written since the open (as the model's
 *                         clients do, clause flush.disk-sets-eof)
 *   VDICLIENT_MODE=tape   VDF_LikeTape: a tape image per device, the data in
 *                         the file and the filemarks' byte offsets in
 *                         "<media>.marks"; Rewind, WriteMark, SkipMarks,
 *                         SkipBlocks (a negative count moves back),
 *                         GetPosition/SetPosition in block addresses (bytes
 *                         / BLOCKSIZE + one per filemark passed), Load as a
 *                         rewind; a Read stops at a filemark with
 *                         ERROR_FILEMARK_DETECTED, at the end of the data
 *                         with ERROR_NO_DATA_DETECTED
 *   VDICLIENT_MODE=removable  VDF_LikePipe | VDF_Removable: volume 0 is the
 *                         media file, volume k "<media>.vol<k>"; a Write
 *                         that finds the volume full (the file cannot grow,
 *                         or VDICLIENT_VOLUME_BYTES reached) keeps what
 *                         fitted and answers ERROR_END_OF_MEDIA; VDC_Load
 *                         starts (BACKUP) or opens (RESTORE) the next one;
 *                         a Read stops at a volume's end with
 *                         ERROR_HANDLE_EOF
 *   VDICLIENT_SNAPSHOT=1  VDF_SnapshotPrepare: answers VDC_PrepareToFreeze;
 *                         VDC_Snapshot is where a product takes the volume
 *                         snapshot: this one records it in
 *                         "<file>.snapshot"; VDC_MountSnapshot checks that
 *                         record (for BACKUP/RESTORE ... WITH SNAPSHOT)
 *   VDICLIENT_SNAPSHOT_MS  how long taking the snapshot takes (default 0)
 *   VDICLIENT_SNAPSHOT_FAIL=1  the snapshot fails: VDC_Snapshot is completed
 *                         with ERROR_OPERATION_ABORTED and the program
 *                         reports failure
 *
 * Tunables (environment, milliseconds; for test runs):
 *   VDICLIENT_GETCOMMAND_MS   GetCommand timeout (default 10000)
 *   VDICLIENT_CONFIG_WAIT_MS  how long to wait for the configuration
 *                             (default 60000, polled 1000 ms at a time)
 *   VDICLIENT_IDLE_MS         give up (SignalAbort) after this long with no
 *                             command on a device (default 300000)
 *
 * Two processes (not on Windows): with VDICLIENT_SECONDARY=K (1..63; a set
 * of K devices or fewer is served by one process) the program serves its
 * first devices itself and, once the set is
 * configured, starts itself again as a secondary process
 *   vdi_client --secondary <backup|restore> <device> <first> <devices> <file>
 * which joins the set by name (OpenInSecondaryEx), opens and serves devices
 * first..devices-1 (first = devices - K) with their media, Closes its view
 * of the set and exits 0 only if each of its devices ended with VD_E_CLOSE.
 * The primary waits for it: the operation succeeded only if both did.
 */
#define _POSIX_C_SOURCE 200809L

#include "vdisim_vdi.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Windows (mingw-w64; run under Wine against vdisim serve): the set object
 * comes from COM, CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet), as
 * Windows products get it; files are binary, fsync is _commit, and there is
 * no SIGXFSZ or SIGPIPE. Everything else is the same program. */
#ifdef _WIN32
#include <io.h>
#include <objbase.h>
#define fsync _commit
#define OPEN_BINARY O_BINARY
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#else
#define OPEN_BINARY 0
#endif

/* ----- which product bug this build carries -------------------------------- */

#if defined(FLAW_TIMEOUT_FATAL) + defined(FLAW_CLOSE_EARLY) + defined(FLAW_FLUSH_UNANSWERED) +      \
        defined(FLAW_SHORT_READ_SUCCESS) + defined(FLAW_SUCCESS_ALWAYS) +                          \
        defined(FLAW_TIMEOUT_SECONDS) + defined(FLAW_NO_CLOSE) + defined(FLAW_TAMPER_BLOCK) +      \
        defined(FLAW_WAIT_AFTER_ABORT) + defined(FLAW_CLOSE_IS_SUCCESS) +                          \
        defined(FLAW_IGNORES_POSITION) + defined(FLAW_IGNORES_FILEMARKS) +                         \
        defined(FLAW_SNAPSHOT_UNANSWERED) + defined(FLAW_VOLUME_FULL_FATAL) +                      \
        defined(FLAW_NO_END_OF_FILE) >                                                             \
    1
#error "at most one FLAW_* per build"
#endif

#if defined(FLAW_TIMEOUT_FATAL)
#define BUILD "FLAW_TIMEOUT_FATAL"
#elif defined(FLAW_CLOSE_EARLY)
#define BUILD "FLAW_CLOSE_EARLY"
#elif defined(FLAW_FLUSH_UNANSWERED)
#define BUILD "FLAW_FLUSH_UNANSWERED"
#elif defined(FLAW_SHORT_READ_SUCCESS)
#define BUILD "FLAW_SHORT_READ_SUCCESS"
#elif defined(FLAW_SUCCESS_ALWAYS)
#define BUILD "FLAW_SUCCESS_ALWAYS"
#elif defined(FLAW_TIMEOUT_SECONDS)
#define BUILD "FLAW_TIMEOUT_SECONDS"
#elif defined(FLAW_NO_CLOSE)
#define BUILD "FLAW_NO_CLOSE"
#elif defined(FLAW_TAMPER_BLOCK)
#define BUILD "FLAW_TAMPER_BLOCK"
#elif defined(FLAW_WAIT_AFTER_ABORT)
#define BUILD "FLAW_WAIT_AFTER_ABORT"
#elif defined(FLAW_CLOSE_IS_SUCCESS)
#define BUILD "FLAW_CLOSE_IS_SUCCESS"
#elif defined(FLAW_IGNORES_POSITION)
#define BUILD "FLAW_IGNORES_POSITION"
#elif defined(FLAW_IGNORES_FILEMARKS)
#define BUILD "FLAW_IGNORES_FILEMARKS"
#elif defined(FLAW_SNAPSHOT_UNANSWERED)
#define BUILD "FLAW_SNAPSHOT_UNANSWERED"
#elif defined(FLAW_VOLUME_FULL_FATAL)
#define BUILD "FLAW_VOLUME_FULL_FATAL"
#elif defined(FLAW_NO_END_OF_FILE)
#define BUILD "FLAW_NO_END_OF_FILE"
#else
#define BUILD "correct"
#endif

/* Win32 codes the header leaves out. */
#ifndef ERROR_ACCESS_DENIED
#define ERROR_ACCESS_DENIED 5
#endif
#ifndef ERROR_WRITE_FAULT
#define ERROR_WRITE_FAULT 29
#endif
#ifndef ERROR_READ_FAULT
#define ERROR_READ_FAULT 30
#endif
#ifndef ERROR_FILE_NOT_FOUND
#define ERROR_FILE_NOT_FOUND 2
#endif

#define MAX_DEVICES 64
#define MAX_MARKS 1024 /* filemarks a tape image holds (a family writes 2) */
#define CONFIG_POLL_MS 1000u

/* ----- logging --------------------------------------------------------------- */

static void say(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "vdi_client: %s\n", line);
}

static const char *hr_name(HRESULT hr, char *buf, size_t len) {
    switch (hr) {
    case NOERROR: return "NOERROR";
    case VD_E_TIMEOUT: return "VD_E_TIMEOUT";
    case VD_E_ABORT: return "VD_E_ABORT";
    case VD_E_INVALID: return "VD_E_INVALID";
    case VD_E_NOTSUPPORTED: return "VD_E_NOTSUPPORTED";
    case VD_E_PROTOCOL: return "VD_E_PROTOCOL";
    case VD_E_OPEN: return "VD_E_OPEN";
    case VD_E_CLOSE: return "VD_E_CLOSE";
    case VD_E_BUSY: return "VD_E_BUSY";
    default: snprintf(buf, len, "0x%08x", (unsigned)hr); return buf;
    }
}
#define HR(hr) hr_name((hr), (char[16]){0}, 16)

/* ----- the command line and tunables ------------------------------------------ */

static int backup; /* 1: BACKUP (write the media), 0: RESTORE (read it) */
static int ndev;
static int first_dev;  /* the first device this process serves */
static int local_devs; /* the devices this process serves: first_dev.. */
static IClientVirtualDeviceSet2 *set;

static DWORD env_ms(const char *name, DWORD dflt) {
    const char *v = getenv(name);
    if (v == NULL || *v == 0)
        return dflt;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end != 0 || n == 0 || n > 86400000ul) {
        say("ignoring %s=%s (want 1..86400000 ms)", name, v);
        return dflt;
    }
    return (DWORD)n;
}

static DWORD getcommand_ms, config_wait_ms, idle_ms;

/* The device shape and snapshot mode (environment). */
enum { MODE_PIPE, MODE_DISK, MODE_TAPE, MODE_REMOVABLE };
#define MAX_VOLUMES 256 /* volumes a removable device's family may span */
static uint64_t volume_bytes; /* VDICLIENT_VOLUME_BYTES: a volume's capacity (0: the file's limit) */
static int mode = MODE_PIPE;
static int snapshot_mode;    /* VDICLIENT_SNAPSHOT=1: VDF_SnapshotPrepare */
static int snapshot_fail;    /* VDICLIENT_SNAPSHOT_FAIL=1: VDC_Snapshot -> 995 */
static DWORD snapshot_ms;    /* VDICLIENT_SNAPSHOT_MS: how long the snapshot takes */

/* VDICLIENT_MODE, VDICLIENT_SNAPSHOT*: 0 on a bad value. */
static int read_modes(void) {
    const char *m = getenv("VDICLIENT_MODE");
    if (m == NULL || *m == 0 || strcmp(m, "pipe") == 0)
        mode = MODE_PIPE;
    else if (strcmp(m, "disk") == 0)
        mode = MODE_DISK;
    else if (strcmp(m, "tape") == 0)
        mode = MODE_TAPE;
    else if (strcmp(m, "removable") == 0)
        mode = MODE_REMOVABLE;
    else {
        say("VDICLIENT_MODE=%s: want pipe, disk, tape or removable", m);
        return 0;
    }
    volume_bytes = getenv("VDICLIENT_VOLUME_BYTES") ? env_ms("VDICLIENT_VOLUME_BYTES", 0) : 0;
    const char *v = getenv("VDICLIENT_SNAPSHOT");
    snapshot_mode = v != NULL && strcmp(v, "1") == 0;
    v = getenv("VDICLIENT_SNAPSHOT_FAIL");
    snapshot_fail = v != NULL && strcmp(v, "1") == 0;
    snapshot_ms = getenv("VDICLIENT_SNAPSHOT_MS") ? env_ms("VDICLIENT_SNAPSHOT_MS", 0) : 0;
    return 1;
}

/* UTF-8 to NUL-terminated UTF-16 (what the COM-shaped interface takes). */
static uint16_t *utf16(const char *s) {
    size_t n = strlen(s);
    uint16_t *out = malloc((n + 1) * sizeof *out), *o = out;
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t c = *p++;
        int more = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
        if (more)
            c &= 0x3fu >> more;
        while (more-- > 0 && (*p & 0xc0) == 0x80)
            c = (c << 6) | (*p++ & 0x3fu);
        if (c >= 0x10000) {
            c -= 0x10000;
            *o++ = (uint16_t)(0xd800 + (c >> 10));
            *o++ = (uint16_t)(0xdc00 + (c & 0x3ff));
        } else {
            *o++ = (uint16_t)c;
        }
    }
    *o = 0;
    return out;
}

/* ----- the media -------------------------------------------------------------- */

static DWORD errno_to_win32(int e, int writing) {
    switch (e) {
    case ENOSPC:
    case EFBIG:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return ERROR_DISK_FULL;
    case EACCES:
    case EPERM:
        return ERROR_ACCESS_DENIED;
    default:
        return writing ? ERROR_WRITE_FAULT : ERROR_READ_FAULT;
    }
}

typedef struct {
    int index;
    char *name;
    char *path;
    IClientVirtualDevice *dev;
    int fd;
    uint64_t media_size; /* restore: the file's size */
    uint64_t offset;     /* bytes written / read so far */
    unsigned long commands, flushes;
    int completes;   /* VDC_Complete answered with ERROR_SUCCESS */
    int media_error; /* a Write/Read/Flush failed on our side */
    HRESULT end;     /* the code that ended the device's loop */
    int finished;    /* FLAW_CLOSE_EARLY: left the loop on its own */
    uint64_t hi;     /* disk: the furthest byte written since the open */
    uint64_t head;   /* tape: the head's byte position in the data */
    int passed;      /* tape: filemarks before the head */
    int nmarks;      /* tape: filemarks on the medium */
    uint64_t marks[MAX_MARKS]; /* tape: their byte offsets, ascending */
    int volume;                /* removable: the current volume (0: the media file) */
    uint64_t volume_used;      /* removable: bytes written on it */
    char *marks_path;          /* tape: "<media>.marks", one offset a line */
} Device;

static Device devs[MAX_DEVICES];

static DWORD media_write(Device *d, const uint8_t *buf, size_t n, size_t *done) {
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(d->fd, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            *done = off;
            d->offset += off;
            say("dev%d: write to %s failed after %llu bytes: %s", d->index, d->path,
                (unsigned long long)d->offset, strerror(e));
            return errno_to_win32(e, 1);
        }
        off += (size_t)w;
    }
    *done = off;
    d->offset += off;
    return ERROR_SUCCESS;
}

static DWORD media_read(Device *d, uint8_t *buf, size_t n, size_t *done) {
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(d->fd, buf + off, n - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            *done = off;
            d->offset += off;
            say("dev%d: read from %s failed at %llu: %s", d->index, d->path,
                (unsigned long long)d->offset, strerror(e));
            return errno_to_win32(e, 0);
        }
        if (r == 0)
            break;
        off += (size_t)r;
    }
    *done = off;
    d->offset += off;
    if (off < n) {
#ifdef FLAW_SHORT_READ_SUCCESS
        /* The bug: only a read that got nothing is the end of the media. */
        if (off > 0)
            return ERROR_SUCCESS;
#endif
        return ERROR_HANDLE_EOF;
    }
    return ERROR_SUCCESS;
}

static DWORD media_sync(Device *d) {
    if (fsync(d->fd) == 0 || errno == EINVAL || errno == EROFS || errno == EBADF)
        return ERROR_SUCCESS;
    say("dev%d: fsync %s: %s", d->index, d->path, strerror(errno));
    return errno_to_win32(errno, 1);
}

/* ----- device shapes (VDICLIENT_MODE, VDICLIENT_SNAPSHOT) ----------------------- */

static uint32_t block_size = 512; /* the configuration's BLOCKSIZE (tape addresses) */
static const char *media_file;    /* {file}: the snapshot record is "<file>.snapshot" */

/* n bytes at byte `at` of the device's file (lseek, then read or write, so
 * the same code builds for Windows). */
static DWORD media_at(Device *d, uint8_t *buf, size_t n, uint64_t at, int writing, size_t *done) {
    *done = 0;
    if (lseek(d->fd, (off_t)at, SEEK_SET) == (off_t)-1) {
        say("dev%d: seek to %llu in %s: %s", d->index, (unsigned long long)at, d->path,
            strerror(errno));
        return errno_to_win32(errno, writing);
    }
    while (*done < n) {
        ssize_t r = writing ? write(d->fd, buf + *done, n - *done)
                            : read(d->fd, buf + *done, n - *done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (r == 0 && writing)) {
            int e = r < 0 ? errno : ENOSPC;
            say("dev%d: %s %s at %llu: %s", d->index, writing ? "write to" : "read from", d->path,
                (unsigned long long)(at + *done), strerror(e));
            return errno_to_win32(e, writing);
        }
        if (r == 0)
            break;
        *done += (size_t)r;
    }
    return ERROR_SUCCESS;
}

/* Disk-like (VDF_RandomAccess): each Write and Read at the command's
 * position; the furthest byte written is remembered for the Flush. */
static DWORD disk_io(Device *d, VDC_Command *cmd, size_t *done) {
    int writing = cmd->commandCode == VDC_Write;
    uint64_t at = cmd->position < 0 ? 0 : (uint64_t)cmd->position;
#ifdef FLAW_IGNORES_POSITION
    at = d->offset; /* the bug: a running cursor, as on a pipe */
#endif
    DWORD code = media_at(d, cmd->buffer, (size_t)cmd->size, at, writing, done);
    d->offset = at + *done;
    if (writing && at + *done > d->hi)
        d->hi = at + *done;
    if (code == ERROR_SUCCESS && !writing && *done < (size_t)cmd->size)
        return ERROR_HANDLE_EOF;
    return code;
}

/* Disk-like: a Flush sets end-of-file at the furthest byte written since the
 * device was opened (clause flush.disk-sets-eof; the model's clients do
 * the same), then syncs. */
static DWORD disk_flush(Device *d) {
#ifdef FLAW_NO_END_OF_FILE
    return media_sync(d); /* the bug: what lay beyond the backup stays */
#endif
    if (backup && ftruncate(d->fd, (off_t)d->hi) != 0) {
        say("dev%d: set end of %s at %llu: %s", d->index, d->path, (unsigned long long)d->hi,
            strerror(errno));
        return errno_to_win32(errno, 1);
    }
    return media_sync(d);
}

/* Tape-like: the tape image is the device's file (the data, filemarks
 * removed) and "<file>.marks" (the byte offset of each filemark, one a
 * line), written at each Flush and when the device closes. */
static int tape_save_marks(Device *d) {
    FILE *f = fopen(d->marks_path, "w");
    if (f == NULL) {
        say("dev%d: cannot write %s: %s", d->index, d->marks_path, strerror(errno));
        return 0;
    }
    for (int i = 0; i < d->nmarks; i++)
        fprintf(f, "%llu\n", (unsigned long long)d->marks[i]);
    return fclose(f) == 0;
}

static int tape_load_marks(Device *d) {
    FILE *f = fopen(d->marks_path, "r");
    if (f == NULL) {
        say("dev%d: no %s: the tape holds no filemarks", d->index, d->marks_path);
        return 1;
    }
    unsigned long long m;
    while (d->nmarks < MAX_MARKS && fscanf(f, "%llu", &m) == 1)
        d->marks[d->nmarks++] = m;
    fclose(f);
    return 1;
}

static uint64_t tape_size(Device *d) {
    struct stat st;
    return fstat(d->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Where a read from the head stops: the next filemark or the data's end. */
static uint64_t tape_limit(Device *d) {
    return d->passed < d->nmarks ? d->marks[d->passed] : tape_size(d);
}

/* A tape is written in sequence: a Write or WriteMark erases what lies
 * ahead of the head. */
static DWORD tape_erase_ahead(Device *d) {
    d->nmarks = d->passed;
    if (ftruncate(d->fd, (off_t)d->head) != 0)
        return errno_to_win32(errno, 1);
    return ERROR_SUCCESS;
}

static uint64_t tape_address(Device *d) {
    return d->head / block_size + (uint64_t)d->passed;
}

/* SetPosition to block address `addr` (one GetPosition returned). */
static void tape_set_address(Device *d, uint64_t addr) {
    int passed = 0;
    for (int i = 0; i < d->nmarks; i++) {
        if (d->marks[i] / block_size + (uint64_t)i >= addr)
            break;
        passed = i + 1;
    }
    uint64_t pos = (addr - (uint64_t)passed) * block_size, size = tape_size(d);
    d->head = pos < size ? pos : size;
    d->passed = passed;
}

/* A tape command (VDF_LikeTape): 1 if handled, with its code, bytes and
 * position. Skip counts below 0 move backwards (VDF_ReversePosition). */
static int tape_command(Device *d, VDC_Command *cmd, DWORD *code, size_t *bytes, int64_t *pos) {
    int32_t n = cmd->size;
    *code = ERROR_SUCCESS;
    switch (cmd->commandCode) {
    case VDC_Write:
        *code = tape_erase_ahead(d);
        if (*code == ERROR_SUCCESS)
            *code = media_at(d, cmd->buffer, (size_t)n, d->head, 1, bytes);
        d->head += *bytes;
        return 1;
    case VDC_Read: {
        uint64_t limit = tape_limit(d), room = limit > d->head ? limit - d->head : 0;
#ifdef FLAW_IGNORES_FILEMARKS
        room = tape_size(d) - d->head; /* the bug: reads run across filemarks */
#endif
        size_t want = (uint64_t)n < room ? (size_t)n : (size_t)room;
        *code = media_at(d, cmd->buffer, want, d->head, 0, bytes);
        d->head += *bytes;
        if (*code != ERROR_SUCCESS || *bytes == (size_t)n)
            return 1;
#ifndef FLAW_IGNORES_FILEMARKS
        if (d->passed < d->nmarks) {
            d->passed++;
            *code = ERROR_FILEMARK_DETECTED;
            return 1;
        }
#endif
        *code = ERROR_NO_DATA_DETECTED;
        return 1;
    }
    case VDC_WriteMark:
#ifndef FLAW_IGNORES_FILEMARKS /* the bug: the mark is acknowledged, not written */
        *code = tape_erase_ahead(d);
        if (*code != ERROR_SUCCESS)
            return 1;
        if (d->nmarks == MAX_MARKS) {
            say("dev%d: more than %d filemarks", d->index, MAX_MARKS);
            *code = ERROR_END_OF_MEDIA;
            return 1;
        }
        d->marks[d->nmarks++] = d->head;
        d->passed++;
#endif
        return 1;
    case VDC_SkipMarks:
        for (; n > 0; n--) {
            if (d->passed >= d->nmarks) {
                d->head = tape_size(d);
                *code = ERROR_NO_DATA_DETECTED;
                return 1;
            }
            d->head = d->marks[d->passed++];
        }
        for (; n < 0; n++) {
            if (d->passed == 0) {
                d->head = 0;
                *code = ERROR_NO_DATA_DETECTED; /* the beginning of the tape */
                return 1;
            }
            d->head = d->marks[--d->passed];
        }
        return 1;
    case VDC_SkipBlocks: {
        int64_t want = (int64_t)d->head + (int64_t)n * (int64_t)block_size;
        uint64_t lo = d->passed > 0 ? d->marks[d->passed - 1] : 0, hi = tape_limit(d);
        if (want < (int64_t)lo || (uint64_t)want > hi) {
            d->head = want < (int64_t)lo ? lo : hi;
            *code = ERROR_FILEMARK_DETECTED;
        } else {
            d->head = (uint64_t)want;
        }
        return 1;
    }
    case VDC_Rewind:
    case VDC_Load:
        d->head = 0;
        d->passed = 0;
        return 1;
    case VDC_GetPosition:
        *pos = (int64_t)tape_address(d);
        return 1;
    case VDC_SetPosition:
        tape_set_address(d, cmd->position < 0 ? 0 : (uint64_t)cmd->position);
        *pos = (int64_t)tape_address(d);
        return 1;
    case VDC_Flush:
        *code = media_sync(d);
        if (*code == ERROR_SUCCESS && backup && !tape_save_marks(d))
            *code = ERROR_WRITE_FAULT;
        return 1;
    default:
        return 0;
    }
}

/* Removable media (VDF_Removable on a pipe-like device): volume 0 is the
 * device's media file, volume k > 0 is "<media>.vol<k>". A Write that finds
 * the volume full (the file cannot grow: EFBIG under a file-size limit,
 * ENOSPC; or VDICLIENT_VOLUME_BYTES reached) keeps what fitted and completes
 * with ERROR_END_OF_MEDIA; the server then sends VDC_ClearError and
 * VDC_Load, which starts the next volume (BACKUP) or opens it (RESTORE);
 * a Read stops at the end of its volume with ERROR_HANDLE_EOF (clause
 * media.next-volume). */
static int removable_command(Device *d, VDC_Command *cmd, DWORD *code, size_t *bytes) {
    switch (cmd->commandCode) {
    case VDC_Write: {
        size_t n = (size_t)cmd->size;
        if (volume_bytes && d->volume_used + n > volume_bytes)
            n = (size_t)(volume_bytes - d->volume_used);
        *code = media_write(d, cmd->buffer, n, bytes);
        d->volume_used += *bytes;
        int full = *code == ERROR_DISK_FULL || (*code == ERROR_SUCCESS && n < (size_t)cmd->size);
        if (full) {
#ifdef FLAW_VOLUME_FULL_FATAL
            /* the bug: a full volume is taken for a failed backup */
            *code = ERROR_DISK_FULL;
            d->media_error = 1;
            return 1;
#endif
            say("dev%d: volume %d full after %llu bytes", d->index, d->volume,
                (unsigned long long)d->volume_used);
            *code = ERROR_END_OF_MEDIA;
        } else if (*code != ERROR_SUCCESS) {
            d->media_error = 1;
        }
        return 1;
    }
    case VDC_Load: {
        if (d->volume + 1 >= MAX_VOLUMES) {
            say("dev%d: more than %d volumes", d->index, MAX_VOLUMES);
            *code = ERROR_END_OF_MEDIA;
            d->media_error = 1;
            return 1;
        }
        char *path = malloc(strlen(d->path) + 16);
        if (path == NULL) {
            *code = ERROR_WRITE_FAULT;
            d->media_error = 1;
            return 1;
        }
        sprintf(path, "%s.vol%d", d->path, d->volume + 1);
        int fd = backup ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | OPEN_BINARY, 0644)
                        : open(path, O_RDONLY | O_CLOEXEC | OPEN_BINARY);
        if (fd < 0) {
            say("dev%d: VDC_Load: cannot open %s: %s", d->index, path, strerror(errno));
            *code = backup ? errno_to_win32(errno, 1) : ERROR_FILE_NOT_FOUND;
            d->media_error = 1;
            free(path);
            return 1;
        }
        if (backup && fsync(d->fd) != 0 && errno != EINVAL)
            d->media_error = 1;
        close(d->fd);
        d->fd = fd;
        d->volume++;
        d->volume_used = 0;
        say("dev%d: VDC_Load: volume %d (%s)", d->index, d->volume, path);
        free(path);
        *code = ERROR_SUCCESS;
        return 1;
    }
    default:
        return 0;
    }
}

static void sleep_for_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The snapshot commands (VDF_SnapshotPrepare). VDC_Snapshot is where a real
 * product takes the volume snapshot while SQL Server holds the database's
 * writes frozen; this sample records it in "<file>.snapshot" (the time and
 * the database files it would have copied: none here), and VDC_MountSnapshot
 * checks that record before it tells the server the files are in place. */
static int snapshot_command(Device *d, VDC_Command *cmd, DWORD *code, int *answer) {
    char path[4096];
    (void)answer; /* FLAW_SNAPSHOT_UNANSWERED leaves the command unanswered */
    snprintf(path, sizeof path, "%s.snapshot", media_file);
    switch (cmd->commandCode) {
    case VDC_PrepareToFreeze:
        say("dev%d: VDC_PrepareToFreeze: ready for the freeze", d->index);
        *code = ERROR_SUCCESS;
        return 1;
    case VDC_Snapshot: {
#ifdef FLAW_SNAPSHOT_UNANSWERED
        say("dev%d: VDC_Snapshot taken, never completed", d->index); /* the bug */
        *answer = 0;
        return 1;
#endif
        say("dev%d: VDC_Snapshot: taking the snapshot (%lu ms)", d->index,
            (unsigned long)snapshot_ms);
        if (snapshot_ms)
            sleep_for_ms((long)snapshot_ms);
        if (snapshot_fail) {
            say("dev%d: the snapshot failed: VDC_Snapshot -> 995", d->index);
            d->media_error = 1;
            *code = ERROR_OPERATION_ABORTED;
            return 1;
        }
        FILE *f = fopen(path, "w");
        if (f == NULL || fprintf(f, "snapshot taken at %ld\n", (long)time(NULL)) < 0 ||
            fclose(f) != 0) {
            say("dev%d: cannot record the snapshot in %s", d->index, path);
            d->media_error = 1;
            *code = ERROR_WRITE_FAULT;
            return 1;
        }
        *code = ERROR_SUCCESS;
        return 1;
    }
    case VDC_MountSnapshot: {
        struct stat st;
        *code = stat(path, &st) == 0 ? ERROR_SUCCESS : ERROR_FILE_NOT_FOUND;
        say("dev%d: VDC_MountSnapshot: %s", d->index,
            *code == ERROR_SUCCESS ? "the snapshot's files are in place" : "no snapshot recorded");
        if (*code != ERROR_SUCCESS)
            d->media_error = 1;
        return 1;
    }
    default:
        return 0;
    }
}

/* ----- the device threads ------------------------------------------------------ */

static int complete_enabled;
#ifdef FLAW_CLOSE_EARLY
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int ended_count, closed_early;
#endif

static void signal_abort(const char *why) {
    say("%s: SignalAbort", why);
    HRESULT hr = set->lpVtbl->SignalAbort(set);
    if (hr != NOERROR)
        say("SignalAbort = %s", HR(hr));
}

#ifdef FLAW_WAIT_AFTER_ABORT
static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The bug: after VD_E_ABORT the device keeps asking for commands, waiting
 * for the VD_E_CLOSE that never comes after an abort, instead of letting
 * the program Close. */
static HRESULT wait_for_close(Device *d) {
    say("dev%d: VD_E_ABORT; waiting for VD_E_CLOSE", d->index);
    for (;;) {
        VDC_Command *cmd = NULL;
        HRESULT hr = d->dev->lpVtbl->GetCommand(d->dev, getcommand_ms, &cmd);
        if (hr == VD_E_CLOSE)
            return hr;
        if (hr == NOERROR && cmd != NULL)
            d->dev->lpVtbl->CompleteCommand(d->dev, cmd, ERROR_SUCCESS, 0, 0);
        else
            sleep_ms(200);
    }
}
#endif

/* A device's loop has ended with `hr`. */
static void device_ended(Device *d, HRESULT hr) {
#ifdef FLAW_WAIT_AFTER_ABORT
    if (hr == VD_E_ABORT)
        hr = wait_for_close(d);
#endif
    d->end = hr;
#ifdef FLAW_CLOSE_EARLY
    /* The bug: once every device is done by the program's own reckoning
     * (the first Flush of a backup, the last byte of a restore's media),
     * the set is closed at once, without waiting for VD_E_CLOSE. */
    pthread_mutex_lock(&mu);
    int last = ++ended_count == local_devs;
    int any_finished = 0;
    for (int i = first_dev; i < first_dev + local_devs; i++)
        any_finished |= devs[i].finished;
    if (last && any_finished) {
        HRESULT c = set->lpVtbl->Close(set);
        say("every device done: Close = %s", HR(c));
        closed_early = 1;
    }
    pthread_mutex_unlock(&mu);
#endif
}

static void *device_main(void *arg) {
    Device *d = arg;
#ifdef FLAW_TIMEOUT_SECONDS
    /* The bug: the timeout is meant as 90 seconds; GetCommand takes ms. */
    const DWORD timeout = 90;
#else
    const DWORD timeout = getcommand_ms;
#endif
#if !defined(FLAW_TIMEOUT_FATAL) && !defined(FLAW_TIMEOUT_SECONDS)
    DWORD idle = 0;
#endif
    for (;;) {
        VDC_Command *cmd = NULL;
        HRESULT hr = d->dev->lpVtbl->GetCommand(d->dev, timeout, &cmd);
        if (hr == VD_E_TIMEOUT) {
#if defined(FLAW_TIMEOUT_FATAL) || defined(FLAW_TIMEOUT_SECONDS)
            /* The bug: a timeout is taken for a dead server. */
            say("dev%d: GetCommand timed out: the server is gone", d->index);
            signal_abort("timeout");
            device_ended(d, hr);
            return NULL;
#else
            idle += timeout;
            if (idle >= idle_ms) {
                say("dev%d: no command for %lu ms", d->index, (unsigned long)idle);
                signal_abort("idle");
                device_ended(d, hr);
                return NULL;
            }
            continue;
#endif
        }
        if (hr != NOERROR) {
            device_ended(d, hr);
            return NULL;
        }
#if !defined(FLAW_TIMEOUT_FATAL) && !defined(FLAW_TIMEOUT_SECONDS)
        idle = 0;
#endif
        DWORD code = ERROR_SUCCESS;
        size_t bytes = 0;
        int answer = 1;
        int64_t position = 0;
        if (snapshot_mode && snapshot_command(d, cmd, &code, &answer)) {
            /* VDC_PrepareToFreeze, VDC_Snapshot, VDC_MountSnapshot */
        } else if (mode == MODE_REMOVABLE && removable_command(d, cmd, &code, &bytes)) {
            /* VDC_Write (END_OF_MEDIA at a volume's end), VDC_Load */
        } else if (mode == MODE_TAPE && tape_command(d, cmd, &code, &bytes, &position)) {
            if (code != ERROR_SUCCESS && code != ERROR_FILEMARK_DETECTED &&
                code != ERROR_NO_DATA_DETECTED)
                d->media_error = 1;
        } else
            switch (cmd->commandCode) {
        case VDC_Write:
            code = mode == MODE_DISK ? disk_io(d, cmd, &bytes)
                                     : media_write(d, cmd->buffer, (size_t)cmd->size, &bytes);
            if (code != ERROR_SUCCESS)
                d->media_error = 1;
            break;
        case VDC_Read:
            code = mode == MODE_DISK ? disk_io(d, cmd, &bytes)
                                     : media_read(d, cmd->buffer, (size_t)cmd->size, &bytes);
            if (code != ERROR_SUCCESS && code != ERROR_HANDLE_EOF)
                d->media_error = 1;
            if (code == ERROR_HANDLE_EOF)
                say("dev%d: end of media after %llu bytes", d->index,
                    (unsigned long long)d->offset);
            break;
        case VDC_Flush:
            d->flushes++;
            code = mode == MODE_DISK ? disk_flush(d) : media_sync(d);
            if (code != ERROR_SUCCESS)
                d->media_error = 1;
#ifdef FLAW_FLUSH_UNANSWERED
            answer = 0; /* the bug: the flush is done but never completed */
#endif
            break;
        case VDC_Complete:
            code = media_sync(d);
            if (code == ERROR_SUCCESS)
                d->completes = 1;
            else
                d->media_error = 1;
            say("dev%d: VDC_Complete after %llu bytes", d->index, (unsigned long long)d->offset);
#ifdef FLAW_FLUSH_UNANSWERED
            answer = 0;
#endif
            break;
        case VDC_ClearError:
            say("dev%d: VDC_ClearError", d->index);
            break;
        default:
            say("dev%d: command %d not supported", d->index, (int)cmd->commandCode);
            code = ERROR_NOT_SUPPORTED;
        }
        d->commands++;
        if (!answer)
            continue;
#ifdef FLAW_TAMPER_BLOCK
        /* The bug: the block's size field is used as "bytes still to do". */
        if (cmd->commandCode == VDC_Read || cmd->commandCode == VDC_Write)
            cmd->size -= (int32_t)bytes;
#endif
        hr = d->dev->lpVtbl->CompleteCommand(d->dev, cmd, code, (DWORD)bytes, position);
        if (hr != NOERROR) {
            say("dev%d: CompleteCommand = %s", d->index, HR(hr));
            device_ended(d, hr);
            return NULL;
        }
#ifdef FLAW_CLOSE_EARLY
        if (backup ? cmd->commandCode == VDC_Flush
                   : cmd->commandCode == VDC_Read && d->offset >= d->media_size) {
            d->finished = 1;
            device_ended(d, NOERROR);
            return NULL;
        }
#endif
    }
}

/* ----- the program -------------------------------------------------------------- */

/* Opens the devices, serves them on one thread each until every one has
 * ended, and says whether the operation succeeded as far as VDI tells. */
static int run_devices(const VDConfig *cfg) {
    if ((backup && (cfg->features & VDF_ReadMedia)) ||
        (!backup && (cfg->features & VDF_WriteMedia))) {
        say("the statement %s the media but this program was started to %s it",
            backup ? "reads" : "writes", backup ? "write" : "read");
        signal_abort("wrong direction");
        return 0;
    }
    for (int i = first_dev; i < first_dev + local_devs; i++) {
        uint16_t *w = utf16(devs[i].name);
        HRESULT hr = w ? set->lpVtbl->OpenDevice(set, w, &devs[i].dev) : VD_E_MEMORY;
        free(w);
        if (hr != NOERROR) {
            say("OpenDevice '%s' = %s", devs[i].name, HR(hr));
            if (hr != VD_E_ABORT)
                signal_abort("open failed");
            return 0;
        }
    }
    pthread_t threads[MAX_DEVICES];
    int started = 0;
    for (; started < local_devs; started++)
        if (pthread_create(&threads[started], NULL, device_main, &devs[first_dev + started]) !=
            0) {
            say("cannot start a device thread");
            signal_abort("no thread");
            break;
        }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);

    int ok = started == local_devs;
    for (int i = first_dev; i < first_dev + local_devs; i++) {
        Device *d = &devs[i];
        say("dev%d '%s': %s after %lu commands, %llu bytes%s", i, d->name, HR(d->end), d->commands,
            (unsigned long long)d->offset, d->media_error ? ", media error" : "");
        int closed = d->end == VD_E_CLOSE;
#ifdef FLAW_CLOSE_EARLY
        closed |= d->finished;
#endif
        if (!closed || d->media_error)
            ok = 0;
        /* With VDC_Complete negotiated, a backup is whole only once every
         * device has answered it. */
        if (backup && complete_enabled && !d->completes && d->end == VD_E_CLOSE)
            ok = 0;
    }
    return ok;
}

static int finish(int ok) {
    say("%s %s", backup ? "backup" : "restore", ok ? "succeeded" : "FAILED");
#ifdef FLAW_SUCCESS_ALWAYS
    return 0; /* the bug: the outcome is never looked at */
#else
    return ok ? 0 : 1;
#endif
}

static int usage(void) {
    fprintf(stderr, "usage: vdi_client <backup|restore> <database> <device> <devices> <file> "
                    "<server>\n");
    return 2;
}

/* Names device i of the set and opens its media. */
static int open_medium(const char *setname, const char *file, int i) {
    Device *d = &devs[i];
    d->index = i;
    d->name = malloc(strlen(setname) + 16);
    d->path = malloc(strlen(file) + 16);
    if (d->name == NULL || d->path == NULL)
        return 0;
    if (i == 0) {
        strcpy(d->name, setname);
        strcpy(d->path, file);
    } else {
        sprintf(d->name, "%s-dev%d", setname, i);
        sprintf(d->path, "%s.%d", file, i);
    }
    /* A disk-like backup writes over the file (its Flush sets the end); a
     * tape is read and written at its head. */
    int wflags = mode == MODE_DISK ? O_RDWR | O_CREAT
                 : mode == MODE_TAPE ? O_RDWR | O_CREAT | O_TRUNC
                                     : O_WRONLY | O_CREAT | O_TRUNC;
    d->fd = backup ? open(d->path, wflags | O_CLOEXEC | OPEN_BINARY, 0644)
                   : open(d->path, O_RDONLY | O_CLOEXEC | OPEN_BINARY);
    if (d->fd < 0) {
        say("cannot open %s: %s", d->path, strerror(errno));
        return 0;
    }
    struct stat st;
    if (!backup && fstat(d->fd, &st) == 0)
        d->media_size = (uint64_t)st.st_size;
    if (mode == MODE_TAPE) {
        d->marks_path = malloc(strlen(d->path) + 8);
        if (d->marks_path == NULL)
            return 0;
        sprintf(d->marks_path, "%s.marks", d->path);
        if (!backup)
            return tape_load_marks(d);
    }
    return 1;
}

/* Opens the media of devices [from, from + count). */
static int open_media(const char *setname, const char *file, int from, int count) {
    for (int i = from; i < from + count; i++) {
        devs[i].fd = -1;
        if (!open_medium(setname, file, i))
            return 0;
    }
    return 1;
}

/* Closes this process's media (a backup's synced first) and releases its
 * device objects; 0 if a backup's media could not be synced. */
static int close_media(void) {
    int ok = 1;
    for (int i = first_dev; i < first_dev + local_devs; i++) {
        if (devs[i].fd < 0)
            continue;
        if (backup && fsync(devs[i].fd) != 0 && errno != EINVAL)
            ok = 0;
        if (backup && mode == MODE_TAPE && !tape_save_marks(&devs[i]))
            ok = 0;
        close(devs[i].fd);
#ifndef FLAW_NO_CLOSE
        if (devs[i].dev)
            devs[i].dev->lpVtbl->Release(devs[i].dev);
#endif
    }
    return ok;
}

#ifndef _WIN32
#include <sys/wait.h>

/* The secondary process: joins the set `setname` of the primary, serves
 * devices first..ndev-1, Closes its view of the set. */
static int secondary_main(int argc, char **argv) {
    char *end;
    if (argc != 7 || (strcmp(argv[2], "backup") != 0 && strcmp(argv[2], "restore") != 0))
        return usage();
    backup = strcmp(argv[2], "backup") == 0;
    const char *setname = argv[3], *file = argv[6];
    long first = strtol(argv[4], &end, 10);
    if (*end != 0)
        return usage();
    long n = strtol(argv[5], &end, 10);
    if (*end != 0 || n < 2 || n > MAX_DEVICES || first < 1 || first >= n)
        return usage();
    ndev = (int)n;
    first_dev = (int)first;
    local_devs = ndev - first_dev;
    getcommand_ms = env_ms("VDICLIENT_GETCOMMAND_MS", 10000);
    idle_ms = env_ms("VDICLIENT_IDLE_MS", 300000);
    if (!read_modes())
        return 2;
    media_file = file;
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    say("secondary process: devices %d..%d of '%s'", first_dev, ndev - 1, setname);
    if (!open_media(setname, file, first_dev, local_devs))
        return finish(0);
    void *p = NULL;
    HRESULT hr = vdisim_CreateClientVirtualDeviceSet(&IID_IClientVirtualDeviceSet2, &p);
    if (hr != NOERROR) {
        say("cannot make a set object: %s", HR(hr));
        return finish(0);
    }
    set = p;
    uint16_t *wname = utf16(setname);
    hr = wname ? set->lpVtbl->OpenInSecondaryEx(set, NULL, wname) : VD_E_MEMORY;
    free(wname);
    int ok = 0;
    VDConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    if (hr != NOERROR)
        say("OpenInSecondaryEx '%s' = %s", setname, HR(hr));
    else if ((hr = set->lpVtbl->GetConfiguration(set, 5000, &cfg)) != NOERROR)
        say("GetConfiguration in the secondary = %s", HR(hr));
    else {
        complete_enabled = (cfg.features & VDF_CompleteEnabled) != 0;
        block_size = cfg.blockSize ? cfg.blockSize : 512;
        ok = run_devices(&cfg);
    }
    if (hr == NOERROR && (hr = set->lpVtbl->Close(set)) != NOERROR) {
        say("Close (secondary) = %s", HR(hr));
        ok = 0;
    }
    ok &= close_media();
    set->lpVtbl->Release(set);
    return finish(ok);
}

/* Starts this program again as the secondary process for the last devices. */
static pid_t start_secondary(const char *setname, const char *file) {
    char first[16], count[16];
    snprintf(first, sizeof first, "%d", local_devs);
    snprintf(count, sizeof count, "%d", ndev);
    pid_t pid = fork();
    if (pid == 0) {
        char *args[] = {"vdi_client", "--secondary", backup ? "backup" : "restore",
                        (char *)setname, first, count, (char *)file, NULL};
        execv("/proc/self/exe", args);
        say("cannot start the secondary process: %s", strerror(errno));
        _exit(127);
    }
    if (pid < 0)
        say("cannot fork the secondary process: %s", strerror(errno));
    return pid;
}

/* Waits for the secondary process: did it succeed? */
static int wait_secondary(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    say("the secondary process failed (status 0x%x)", (unsigned)status);
    return 0;
}
#endif

int main(int argc, char **argv) {
#ifndef _WIN32
    if (argc > 1 && strcmp(argv[1], "--secondary") == 0)
        return secondary_main(argc, argv);
#endif
    if (argc != 7)
        return usage();
    if (strcmp(argv[1], "backup") == 0)
        backup = 1;
    else if (strcmp(argv[1], "restore") == 0)
        backup = 0;
    else
        return usage();
    const char *database = argv[2], *setname = argv[3], *file = argv[5];
    char *end;
    long n = strtol(argv[4], &end, 10);
    if (*end != 0 || n < 1 || n > MAX_DEVICES || !*setname || !*file)
        return usage();
    ndev = (int)n;
    getcommand_ms = env_ms("VDICLIENT_GETCOMMAND_MS", 10000);
    config_wait_ms = env_ms("VDICLIENT_CONFIG_WAIT_MS", 60000);
    idle_ms = env_ms("VDICLIENT_IDLE_MS", 300000);
    if (!read_modes())
        return 2;
    media_file = file;
    /* A file-size limit must fail the write (EFBIG), not kill the program. */
#ifndef _WIN32
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
#endif
    static const char *const modes[] = {"pipe", "disk", "tape", "removable"};
    say("%s of [%s] on %d device(s) '%s', media %s (build %s, ready-line mode, %s-like%s)",
        backup ? "backup" : "restore", database, ndev, setname, file, BUILD, modes[mode],
        snapshot_mode ? ", snapshot" : "");

    /* The media first: a program that cannot open them does not start. */
    first_dev = 0;
    local_devs = ndev;
#ifndef _WIN32
    const char *sec = getenv("VDICLIENT_SECONDARY");
    if (sec != NULL && *sec != 0) {
        long k = strtol(sec, &end, 10);
        if (*end != 0 || k < 1 || k > MAX_DEVICES - 1) {
            say("VDICLIENT_SECONDARY=%s: want 1..63 (devices served by the secondary)", sec);
            return 2;
        }
        /* A set of K devices or fewer is served by this process alone. */
        if (k < ndev)
            local_devs = ndev - (int)k;
        else
            say("VDICLIENT_SECONDARY=%ld with %d device(s): one process", k, ndev);
    }
#endif
    if (!open_media(setname, file, 0, local_devs))
        return finish(0);

    void *p = NULL;
#ifdef _WIN32
    HRESULT hr = CoInitializeEx(NULL, COINIT_MULTITHREADED);
    if (SUCCEEDED(hr))
        hr = CoCreateInstance(&CLSID_MSSQL_ClientVirtualDeviceSet, NULL, CLSCTX_INPROC_SERVER,
                              &IID_IClientVirtualDeviceSet2, &p);
#else
    HRESULT hr = vdisim_CreateClientVirtualDeviceSet(&IID_IClientVirtualDeviceSet2, &p);
#endif
    if (hr != NOERROR) {
        say("cannot make a set object: %s", HR(hr));
        return finish(0);
    }
    set = p;
    VDConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.deviceCount = (uint32_t)ndev;
    cfg.features = (mode == MODE_DISK        ? VDF_LikeDisk
                    : mode == MODE_TAPE      ? VDF_LikeTape
                    : mode == MODE_REMOVABLE ? VDF_LikePipe | VDF_Removable
                                             : VDF_LikePipe) |
                   VDF_RequestComplete | (snapshot_mode ? VDF_SnapshotPrepare : 0);
    cfg.serverTimeOut = 60000;
    uint16_t *wname = utf16(setname);
    hr = wname ? set->lpVtbl->CreateEx(set, NULL, wname, &cfg) : VD_E_MEMORY;
    if (hr != NOERROR) {
        say("CreateEx '%s' = %s", setname, HR(hr));
        set->lpVtbl->Release(set);
        return finish(0);
    }
    printf("READY\n");
    fflush(stdout);

    /* The statement is someone else's: wait for the server to configure. */
    DWORD waited = 0;
    for (;;) {
        hr = set->lpVtbl->GetConfiguration(set, CONFIG_POLL_MS, &cfg);
        if (hr != VD_E_TIMEOUT)
            break;
        waited += CONFIG_POLL_MS;
        if (waited >= config_wait_ms)
            break;
    }
    int ok = 0;
    if (hr != NOERROR) {
        say("GetConfiguration = %s after %lu ms: no statement opened the set", HR(hr),
            (unsigned long)waited);
    } else {
        complete_enabled = (cfg.features & VDF_CompleteEnabled) != 0;
        block_size = cfg.blockSize ? cfg.blockSize : 512;
        say("configured: deviceCount=%u blockSize=%u maxTransferSize=%u features=0x%x",
            cfg.deviceCount, cfg.blockSize, cfg.maxTransferSize, cfg.features);
#ifndef _WIN32
        pid_t secondary = local_devs < ndev ? start_secondary(setname, file) : 0;
        ok = secondary >= 0 && run_devices(&cfg);
        if (secondary > 0)
            ok &= wait_secondary(secondary);
#else
        ok = run_devices(&cfg);
#endif
    }

    int close_it = 1;
#ifdef FLAW_CLOSE_EARLY
    close_it = !closed_early;
#endif
#ifdef FLAW_NO_CLOSE
    say("exiting without Close"); /* the bug */
    close_it = 0;
#endif
    if (close_it) {
        hr = set->lpVtbl->Close(set);
        if (hr != NOERROR) {
            say("Close = %s", HR(hr));
            ok = 0;
        }
    }
    if (!close_media())
        ok = 0;
#ifndef FLAW_NO_CLOSE
    set->lpVtbl->Release(set);
#endif
    free(wname);
    return finish(ok);
}
