/*
 * c_com_client.c - a VDI backup client in C over the COM-shaped interface
 * (p->lpVtbl->Fn(p, ...)), written the way a real one is: a control thread
 * that creates the set, waits for the server's configuration and opens the
 * devices, and one pthread per device running the GetCommand /
 * CompleteCommand loop until VD_E_CLOSE. Unknown commands are completed
 * with ERROR_NOT_SUPPORTED. The "media" is memory: what a device receives
 * during BACKUP it hands back during RESTORE.
 *
 * Build (Linux):
 *   gcc -std=c11 -Wall -Werror -I sim/standin/include c_com_client.c \
 *       -L <dir of libsqlvdi.so> -lsqlvdi -lpthread -o c_com_client
 * Run against the stand-in's in-process server:
 *   VDISIM_PLAN=plan.toml LD_LIBRARY_PATH=<dir> ./c_com_client <mode>
 *
 * Modes (the plan file must hold the matching statements):
 *   roundtrip     BACKUP striped over 3 devices, then RESTORE from them with a
 *                 second set object; the server checks the restored bytes,
 *                 the client checks every stored 512-byte block carries its
 *                 stream's origin and its offset (vdi_sim::data).
 *   reuse         BACKUP, Close, Create again on the SAME object (same name):
 *                 the old device interfaces are refused (VD_E_PROTOCOL), the
 *                 new set runs the RESTORE.
 *   close-open    BACKUP; once every device has completed 2 commands the
 *                 control thread calls Close with the devices still open:
 *                 VD_E_OPEN, the set is aborted, the devices are invalid,
 *                 the BACKUP fails.
 *   abort         BACKUP; once every device has completed 2 commands the
 *                 control thread calls SignalAbort: every device sees
 *                 VD_E_ABORT, Close returns NOERROR, the BACKUP fails.
 *   server-abort  BACKUP that the server aborts mid-stream (plan:
 *                 abort-after-commands): the devices see VD_E_ABORT.
 *
 * Output: one line per observation, "<phase>: <what> = <code>", and a last
 * line "RESULT <mode> <statement outcome>". Exit status: 0 when every
 * statement succeeded, 3 when a statement failed (as a backup tool would
 * report), 1 when a call returned something the mode did not expect,
 * 2 on bad usage.
 */
#include "vdisim_vdi.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NDEV 3
#define SET_NAME "vdisim-sample"
#define PARK_AFTER 2 /* close-open / abort: commands per device before acting */

/* ----- codes to names ---------------------------------------------------- */

static const char *hr_name(HRESULT hr) {
    static __thread char buf[16];
    switch (hr) {
    case NOERROR: return "NOERROR";
    case VD_E_NOTOPEN: return "VD_E_NOTOPEN";
    case VD_E_TIMEOUT: return "VD_E_TIMEOUT";
    case VD_E_ABORT: return "VD_E_ABORT";
    case VD_E_INVALID: return "VD_E_INVALID";
    case VD_E_NOTSUPPORTED: return "VD_E_NOTSUPPORTED";
    case VD_E_PROTOCOL: return "VD_E_PROTOCOL";
    case VD_E_OPEN: return "VD_E_OPEN";
    case VD_E_CLOSE: return "VD_E_CLOSE";
    default:
        snprintf(buf, sizeof buf, "0x%08x", (unsigned)hr);
        return buf;
    }
}

static int failures;

/* Prints "<phase>: <what> = <code>" and notes a mismatch. */
static void expect(const char *phase, const char *what, HRESULT got, HRESULT want) {
    printf("%s: %s = %s\n", phase, what, hr_name(got));
    if (got != want) {
        printf("UNEXPECTED: %s: %s wanted %s\n", phase, what, hr_name(want));
        failures++;
    }
}

static void to_utf16(uint16_t *out, const char *s) {
    while ((*out++ = (uint16_t)(unsigned char)*s++)) {
    }
}

/* ----- the media: one growable byte array per device ---------------------- */

typedef struct {
    uint8_t *data;
    size_t len, cap, cursor;
} Media;

static int media_append(Media *m, const uint8_t *p, size_t n) {
    if (m->len + n > m->cap) {
        size_t cap = (m->len + n) * 2;
        uint8_t *d = realloc(m->data, cap);
        if (!d)
            return 0;
        m->data = d;
        m->cap = cap;
    }
    memcpy(m->data + m->len, p, n);
    m->len += n;
    return 1;
}

/* ----- device threads ----------------------------------------------------- */

typedef struct {
    int index;
    IClientVirtualDevice *dev;
    Media *media;
    int park_after; /* 0: never park */
    HRESULT end;    /* the code that ended the loop */
    unsigned long commands;
} Worker;

/* The gate the control thread uses to act "mid-stream" deterministically:
 * parked devices have completed park_after commands and wait to be let go. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int parked, released;

static void park(void) {
    pthread_mutex_lock(&gate_mu);
    parked++;
    pthread_cond_broadcast(&gate_cv);
    while (!released)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void wait_parked(int n) {
    pthread_mutex_lock(&gate_mu);
    while (parked < n)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void release_parked(void) {
    pthread_mutex_lock(&gate_mu);
    released = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static void *device_thread(void *arg) {
    Worker *w = arg;
    for (;;) {
        if (w->park_after && w->commands == (unsigned long)w->park_after)
            park();
        VDC_Command *cmd = NULL;
        HRESULT hr = w->dev->lpVtbl->GetCommand(w->dev, INFINITE, &cmd);
        if (hr != NOERROR) {
            w->end = hr; /* VD_E_CLOSE: the normal end */
            break;
        }
        DWORD code = ERROR_SUCCESS, bytes = 0;
        Media *m = w->media;
        switch (cmd->commandCode) {
        case VDC_Write:
            if (media_append(m, cmd->buffer, (size_t)cmd->size))
                bytes = (DWORD)cmd->size;
            else
                code = ERROR_DISK_FULL;
            break;
        case VDC_Read: {
            size_t left = m->len - m->cursor;
            size_t n = left < (size_t)cmd->size ? left : (size_t)cmd->size;
            memcpy(cmd->buffer, m->data + m->cursor, n);
            m->cursor += n;
            bytes = (DWORD)n;
            if (n == 0)
                code = ERROR_HANDLE_EOF;
            break;
        }
        case VDC_Flush:
        case VDC_ClearError:
            break;
        default:
            code = ERROR_NOT_SUPPORTED;
        }
        hr = w->dev->lpVtbl->CompleteCommand(w->dev, cmd, code, bytes, 0);
        if (hr != NOERROR) {
            w->end = hr;
            break;
        }
        w->commands++;
    }
    return NULL;
}

/* ----- the control thread's steps ----------------------------------------- */

static Media media[NDEV];
static uint16_t dev_names[NDEV][64];

static IClientVirtualDeviceSet2 *new_set_object(void) {
    void *p = NULL;
    HRESULT hr = vdisim_CreateClientVirtualDeviceSet(&IID_IClientVirtualDeviceSet2, &p);
    if (hr != S_OK || !p) {
        printf("UNEXPECTED: factory = %s\n", hr_name(hr));
        exit(1);
    }
    return p;
}

static void create_set(IClientVirtualDeviceSet2 *set, const char *phase, const char *what) {
    VDConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.deviceCount = NDEV;
    cfg.features = VDF_LikePipe;
    expect(phase, what, set->lpVtbl->CreateEx(set, NULL, dev_names[0], &cfg), NOERROR);
}

/* GetConfiguration, then OpenDevice for every device. Exits on failure:
 * there is nothing to run without devices. */
static void open_devices(IClientVirtualDeviceSet2 *set, const char *phase,
                         IClientVirtualDevice *devs[NDEV]) {
    VDConfig cfg;
    HRESULT hr = set->lpVtbl->GetConfiguration(set, 30000, &cfg);
    expect(phase, "GetConfiguration", hr, NOERROR);
    if (hr != NOERROR)
        exit(1);
    printf("%s: deviceCount=%u blockSize=%u maxTransferSize=%u %s\n", phase,
           (unsigned)cfg.deviceCount, (unsigned)cfg.blockSize, (unsigned)cfg.maxTransferSize,
           (cfg.features & VDF_WriteMedia) ? "WriteMedia"
           : (cfg.features & VDF_ReadMedia) ? "ReadMedia"
                                            : "no-media-flag");
    for (int i = 0; i < NDEV; i++) {
        char what[32];
        snprintf(what, sizeof what, "OpenDevice dev%d", i);
        devs[i] = NULL;
        hr = set->lpVtbl->OpenDevice(set, dev_names[i], &devs[i]);
        expect(phase, what, hr, NOERROR);
        if (hr != NOERROR)
            exit(1);
    }
}

typedef enum { ACT_NONE, ACT_CLOSE, ACT_ABORT } Action;

/* Runs the device threads to their end. With an action, waits until every
 * device has completed PARK_AFTER commands, then closes or aborts the set
 * from this (the control) thread and lets the devices go on. */
static void run_devices(IClientVirtualDeviceSet2 *set, const char *phase,
                        IClientVirtualDevice *devs[NDEV], Action act, HRESULT want_end) {
    Worker w[NDEV];
    pthread_t t[NDEV];
    parked = released = 0;
    for (int i = 0; i < NDEV; i++) {
        w[i] = (Worker){.index = i,
                        .dev = devs[i],
                        .media = &media[i],
                        .park_after = act == ACT_NONE ? 0 : PARK_AFTER,
                        .end = NOERROR,
                        .commands = 0};
        if (pthread_create(&t[i], NULL, device_thread, &w[i]) != 0) {
            printf("UNEXPECTED: pthread_create\n");
            exit(1);
        }
    }
    if (act != ACT_NONE) {
        wait_parked(NDEV);
        printf("%s: every device completed %d commands\n", phase, PARK_AFTER);
        if (act == ACT_CLOSE)
            expect(phase, "Close with devices open", set->lpVtbl->Close(set), VD_E_OPEN);
        else
            expect(phase, "SignalAbort", set->lpVtbl->SignalAbort(set), NOERROR);
        release_parked();
    }
    for (int i = 0; i < NDEV; i++) {
        char what[32];
        pthread_join(t[i], NULL);
        snprintf(what, sizeof what, "dev%d end", i);
        expect(phase, what, w[i].end, want_end);
    }
}

/* The statement's outcome from the in-process server: "SUCCEEDED" or
 * "FAILED", and the SQL message numbers it reported. */
static int statement(const char *phase) {
    static char json[65536];
    int st = vdisim_statement_outcome(30000, json, sizeof json, NULL);
    const char *name = st == VDISIM_OUTCOME_SUCCEEDED ? "SUCCEEDED"
                       : st == VDISIM_OUTCOME_FAILED  ? "FAILED"
                       : st == VDISIM_OUTCOME_RUNNING ? "RUNNING"
                                                      : "NONE";
    printf("%s: statement = %s messages", phase, name);
    for (const char *p = json; (p = strstr(p, "\"number\":")) != NULL; p++)
        printf(" %ld", strtol(p + 9, NULL, 10));
    printf("\n");
    return st;
}

/* Every 512-byte block a device stored starts with its stream's origin
 * (u64 LE) and its offset in that stream (u64 LE): one origin per device,
 * offsets 0, 512, 1024, ... with no gap. Returns the total, 0 on error. */
static unsigned long long check_stored(const char *phase) {
    unsigned long long total = 0;
    uint64_t origins[NDEV];
    for (int i = 0; i < NDEV; i++) {
        const Media *m = &media[i];
        if (m->len == 0 || m->len % 512 != 0) {
            printf("UNEXPECTED: %s: dev%d stored %zu bytes\n", phase, i, m->len);
            return 0;
        }
        /* The family's 64 KiB media header, then 512-byte blocks tagged
         * with their stream and media position (docs/MEDIA.md). */
        if (m->len < 65536 || memcmp(m->data, "VDISIMMF", 8) != 0) {
            printf("UNEXPECTED: %s: dev%d has no media header\n", phase, i);
            return 0;
        }
        for (size_t off = 65536; off < m->len; off += 512) {
            uint64_t origin, pos;
            memcpy(&origin, m->data + off, 8);
            memcpy(&pos, m->data + off + 8, 8);
            if (off == 65536)
                origins[i] = origin;
            if (origin != origins[i] || pos != off) {
                printf("UNEXPECTED: %s: dev%d block at %zu has origin %llx offset %llu\n", phase,
                       i, off, (unsigned long long)origin, (unsigned long long)pos);
                return 0;
            }
        }
        for (int j = 0; j < i; j++)
            if (origins[j] == origins[i]) {
                printf("UNEXPECTED: %s: dev%d and dev%d share a stream\n", phase, j, i);
                return 0;
            }
        total += m->len;
    }
    printf("%s: stored %llu bytes on %d devices, its media header and every block tagged with its stream and offset\n",
           phase, total, NDEV);
    return total;
}

static void check_read_back(const char *phase) {
    unsigned long long total = 0;
    for (int i = 0; i < NDEV; i++) {
        if (media[i].cursor != media[i].len) {
            printf("UNEXPECTED: %s: dev%d read %zu of %zu bytes\n", phase, i, media[i].cursor,
                   media[i].len);
            failures++;
        }
        total += media[i].cursor;
    }
    printf("%s: read back %llu bytes\n", phase, total);
}

static void release_devices(IClientVirtualDevice *devs[NDEV]) {
    for (int i = 0; i < NDEV; i++)
        if (devs[i])
            devs[i]->lpVtbl->Release(devs[i]);
}

/* BACKUP, or RESTORE, on a set already created: configure, open, run the
 * device loops to VD_E_CLOSE, Close. */
static int transfer(IClientVirtualDeviceSet2 *set, const char *phase,
                    IClientVirtualDevice *devs[NDEV]) {
    open_devices(set, phase, devs);
    run_devices(set, phase, devs, ACT_NONE, VD_E_CLOSE);
    expect(phase, "Close", set->lpVtbl->Close(set), NOERROR);
    return statement(phase);
}

static int finish(const char *mode, int statement_ok) {
    printf("RESULT %s %s\n", mode, statement_ok ? "SUCCEEDED" : "FAILED");
    if (failures)
        return 1;
    return statement_ok ? 0 : 3;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    char name[64];
    for (int i = 0; i < NDEV; i++) {
        if (i == 0)
            snprintf(name, sizeof name, "%s", SET_NAME);
        else
            snprintf(name, sizeof name, "%s-dev%d", SET_NAME, i);
        to_utf16(dev_names[i], name);
    }
    printf("sample c-com mode=%s devices=%d\n", mode, NDEV);
    IClientVirtualDevice *devs[NDEV] = {0};

    if (strcmp(mode, "roundtrip") == 0) {
        IClientVirtualDeviceSet2 *set = new_set_object();
        create_set(set, "backup", "CreateEx");
        int ok = transfer(set, "backup", devs) == VDISIM_OUTCOME_SUCCEEDED;
        ok = ok && check_stored("backup") != 0;
        release_devices(devs);
        set->lpVtbl->Release(set);
        if (!ok)
            return finish(mode, 0);
        /* RESTORE with a fresh object, as a separate restore run would. */
        set = new_set_object();
        create_set(set, "restore", "CreateEx");
        ok = transfer(set, "restore", devs) == VDISIM_OUTCOME_SUCCEEDED;
        check_read_back("restore");
        release_devices(devs);
        set->lpVtbl->Release(set);
        return finish(mode, ok);
    }
    if (strcmp(mode, "reuse") == 0) {
        IClientVirtualDeviceSet2 *set = new_set_object();
        create_set(set, "backup", "CreateEx");
        int ok = transfer(set, "backup", devs) == VDISIM_OUTCOME_SUCCEEDED;
        ok = ok && check_stored("backup") != 0;
        if (!ok)
            return finish(mode, 0);
        /* Close returned NOERROR: the same object may create again. */
        create_set(set, "reuse", "create again on the same object");
        for (int i = 0; i < NDEV; i++) {
            char what[64];
            VDC_Command *cmd = (VDC_Command *)&what; /* must come back NULL */
            snprintf(what, sizeof what, "old dev%d GetCommand", i);
            expect("reuse", what, devs[i]->lpVtbl->GetCommand(devs[i], 0, &cmd), VD_E_PROTOCOL);
            if (cmd != NULL) {
                printf("UNEXPECTED: reuse: old dev%d GetCommand left a command\n", i);
                failures++;
            }
        }
        release_devices(devs);
        ok = transfer(set, "restore", devs) == VDISIM_OUTCOME_SUCCEEDED;
        check_read_back("restore");
        release_devices(devs);
        set->lpVtbl->Release(set);
        return finish(mode, ok);
    }
    if (strcmp(mode, "close-open") == 0 || strcmp(mode, "abort") == 0 ||
        strcmp(mode, "server-abort") == 0) {
        int closing = strcmp(mode, "close-open") == 0;
        int client_abort = strcmp(mode, "abort") == 0;
        IClientVirtualDeviceSet2 *set = new_set_object();
        create_set(set, "backup", "CreateEx");
        open_devices(set, "backup", devs);
        if (closing) {
            /* Close already released the set: the devices are invalid. */
            run_devices(set, "backup", devs, ACT_CLOSE, VD_E_PROTOCOL);
            expect("backup", "Close again", set->lpVtbl->Close(set), VD_E_PROTOCOL);
        } else {
            run_devices(set, "backup", devs, client_abort ? ACT_ABORT : ACT_NONE, VD_E_ABORT);
            expect("backup", "Close after abort", set->lpVtbl->Close(set), NOERROR);
        }
        int ok = statement("backup") == VDISIM_OUTCOME_SUCCEEDED;
        release_devices(devs);
        set->lpVtbl->Release(set);
        return finish(mode, ok);
    }
    fprintf(stderr, "usage: %s roundtrip|reuse|close-open|abort|server-abort\n", argv[0]);
    return 2;
}
