/* A C client over the COM-shaped interface: a striped BACKUP then RESTORE
 * through the in-process server, checked byte for byte, plus bad input.
 * Usage: roundtrip_com <set-name-prefix> <expected-total-bytes> */
#include "vdisim_vdi.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NDEV 2
#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, "\n");                                          \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

typedef struct {
    uint8_t *data;
    size_t len, cap, cursor;
} Media;

static Media media[NDEV];
static uint16_t names[NDEV][128];
static IClientVirtualDeviceSet2 *set;
static int restoring;

static void to_u16(uint16_t *out, const char *s) {
    while ((*out++ = (uint16_t)(unsigned char)*s++)) {
    }
}

static void append(Media *m, const uint8_t *p, size_t n) {
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->data = realloc(m->data, m->cap);
        CHECK(m->data, "out of memory");
    }
    memcpy(m->data + m->len, p, n);
    m->len += n;
}

static void *device_thread(void *arg) {
    int i = (int)(intptr_t)arg;
    IClientVirtualDevice *dev = NULL;
    HRESULT hr = set->lpVtbl->OpenDevice(set, names[i], &dev);
    CHECK(hr == NOERROR && dev, "OpenDevice(%d) = 0x%08x", i, (unsigned)hr);
    int first = 1;
    for (;;) {
        VDC_Command *cmd = NULL;
        hr = IClientVirtualDevice_GetCommand(dev, INFINITE, &cmd);
        if (hr == VD_E_CLOSE)
            break;
        CHECK(hr == NOERROR && cmd, "GetCommand(%d) = 0x%08x", i, (unsigned)hr);
        DWORD code = ERROR_SUCCESS, bytes = 0;
        switch (cmd->commandCode) {
        case VDC_Write:
            append(&media[i], cmd->buffer, (size_t)cmd->size);
            bytes = (DWORD)cmd->size;
            break;
        case VDC_Read: {
            size_t left = media[i].len - media[i].cursor;
            size_t n = left < (size_t)cmd->size ? left : (size_t)cmd->size;
            if (n == 0)
                code = ERROR_HANDLE_EOF;
            memcpy(cmd->buffer, media[i].data + media[i].cursor, n);
            media[i].cursor += n;
            bytes = (DWORD)n;
            break;
        }
        case VDC_Flush:
        case VDC_ClearError:
            break;
        default:
            code = ERROR_NOT_SUPPORTED;
        }
        if (first && i == 0 && !restoring) {
            /* A classic client bug: writing into the read-only block. The
             * library records it and still accepts the completion. */
            cmd->size = 1;
        }
        hr = IClientVirtualDevice_CompleteCommand(dev, cmd, code, bytes, 0);
        CHECK(hr == NOERROR, "CompleteCommand(%d) = 0x%08x", i, (unsigned)hr);
        if (first) {
            first = 0;
            hr = IClientVirtualDevice_CompleteCommand(dev, cmd, ERROR_SUCCESS, 0, 0);
            CHECK(hr == VD_E_INVALID, "stale CompleteCommand = 0x%08x", (unsigned)hr);
            VDC_Command foreign;
            memset(&foreign, 0, sizeof foreign);
            hr = IClientVirtualDevice_CompleteCommand(dev, &foreign, ERROR_SUCCESS, 0, 0);
            CHECK(hr == VD_E_INVALID, "foreign CompleteCommand = 0x%08x", (unsigned)hr);
            hr = IClientVirtualDevice_CompleteCommand(dev, NULL, ERROR_SUCCESS, 0, 0);
            CHECK(hr == VD_E_INVALID, "null CompleteCommand = 0x%08x", (unsigned)hr);
            hr = IClientVirtualDevice_GetCommand(dev, 0, NULL);
            CHECK(hr == VD_E_INVALID, "GetCommand(NULL) = 0x%08x", (unsigned)hr);
        }
    }
    return dev;
}

/* A family is its 64 KiB media header (it begins "VDISIMMF"), then
 * 512-byte blocks that each start with the stream's origin and the block's
 * media position: one origin per device, positions 65536, 66048, ... */
static uint64_t check_family(const Media *m) {
    uint64_t origin = 0;
    CHECK(m->len >= 65536 && memcmp(m->data, "VDISIMMF", 8) == 0, "no media header");
    for (size_t off = 65536; off < m->len; off += 512) {
        uint64_t o, pos;
        memcpy(&o, m->data + off, 8);
        memcpy(&pos, m->data + off + 8, 8);
        if (off == 65536)
            origin = o;
        CHECK(o == origin && pos == off, "block at %zu: origin %llx offset %llu", off,
              (unsigned long long)o, (unsigned long long)pos);
    }
    return origin;
}

int main(int argc, char **argv) {
    const char *prefix = argc > 1 ? argv[1] : "vdisim-c";
    unsigned long long expected = argc > 2 ? strtoull(argv[2], NULL, 10) : 0;
    char setname[96], devname[128];
    snprintf(setname, sizeof setname, "%s-%d", prefix, (int)getpid());
    to_u16(names[0], setname);
    for (int i = 1; i < NDEV; i++) {
        snprintf(devname, sizeof devname, "%s-dev%d", setname, i);
        to_u16(names[i], devname);
    }

    void *p = NULL;
    HRESULT hr = vdisim_CreateClientVirtualDeviceSet(NULL, &p);
    CHECK(hr == E_POINTER && p == NULL, "factory(NULL riid) = 0x%08x", (unsigned)hr);
    hr = vdisim_CreateClientVirtualDeviceSet(&IID_IClientVirtualDevice, &p);
    CHECK(hr == E_NOINTERFACE && p == NULL, "factory(device IID) = 0x%08x", (unsigned)hr);
    hr = vdisim_CreateClientVirtualDeviceSet(&IID_IClientVirtualDeviceSet2, &p);
    CHECK(hr == S_OK && p, "factory = 0x%08x", (unsigned)hr);
    set = (IClientVirtualDeviceSet2 *)p;

    for (int phase = 0; phase < 2; phase++) {
        restoring = phase;
        VDConfig cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.deviceCount = NDEV;
        hr = IClientVirtualDeviceSet2_CreateEx(set, NULL, names[0], &cfg);
        CHECK(hr == NOERROR, "CreateEx = 0x%08x", (unsigned)hr);
        hr = IClientVirtualDeviceSet2_Create(set, names[0], &cfg);
        CHECK(hr == VD_E_PROTOCOL, "second Create = 0x%08x", (unsigned)hr);
        VDConfig got;
        hr = IClientVirtualDeviceSet2_GetConfiguration(set, 10000, &got);
        CHECK(hr == NOERROR, "GetConfiguration = 0x%08x", (unsigned)hr);
        CHECK(got.features & (phase ? VDF_ReadMedia : VDF_WriteMedia), "features %x",
              got.features);
        CHECK(got.blockSize == 512 && got.maxTransferSize == 65536, "block %u mts %u",
              got.blockSize, got.maxTransferSize);
        IClientVirtualDevice *bad = (IClientVirtualDevice *)1;
        uint16_t nope[8];
        to_u16(nope, "nope");
        hr = IClientVirtualDeviceSet2_OpenDevice(set, nope, &bad);
        CHECK(hr == VD_E_INVALID && bad == NULL, "OpenDevice(nope) = 0x%08x", (unsigned)hr);

        pthread_t t[NDEV];
        for (int i = 0; i < NDEV; i++)
            pthread_create(&t[i], NULL, device_thread, (void *)(intptr_t)i);
        IClientVirtualDevice *devs[NDEV];
        for (int i = 0; i < NDEV; i++) {
            void *r;
            pthread_join(t[i], &r);
            devs[i] = r;
        }
        hr = IClientVirtualDeviceSet2_Close(set);
        CHECK(hr == NOERROR, "Close = 0x%08x", (unsigned)hr);
        hr = IClientVirtualDeviceSet2_Close(set);
        CHECK(hr == VD_E_PROTOCOL, "double Close = 0x%08x", (unsigned)hr);
        VDC_Command *c = (VDC_Command *)1;
        hr = IClientVirtualDevice_GetCommand(devs[0], 0, &c);
        CHECK(hr == VD_E_PROTOCOL && c == NULL, "GetCommand after Close = 0x%08x", (unsigned)hr);
        for (int i = 0; i < NDEV; i++)
            CHECK(IClientVirtualDevice_Release(devs[i]) == 0, "device release");

        char json[16384];
        int st = vdisim_statement_outcome(10000, json, sizeof json, NULL);
        printf("%s outcome: %s\n", phase ? "RESTORE" : "BACKUP", json);
        CHECK(st == VDISIM_OUTCOME_SUCCEEDED, "statement %d status %d", phase, st);

        if (phase == 0) {
            unsigned long long total = 0;
            uint64_t origins[NDEV];
            for (int i = 0; i < NDEV; i++) {
                CHECK(media[i].len > 0, "device %d received nothing", i);
                origins[i] = check_family(&media[i]);
                total += media[i].len;
            }
            CHECK(origins[0] != origins[1], "families share an origin");
            CHECK(expected == 0 || total == expected, "backup total %llu, expected %llu", total,
                  expected);
        } else {
            for (int i = 0; i < NDEV; i++)
                CHECK(media[i].cursor == media[i].len, "device %d: restore read %zu of %zu", i,
                      media[i].cursor, media[i].len);
        }
    }
    CHECK(vdisim_block_modifications() == 1, "modifications %llu",
          (unsigned long long)vdisim_block_modifications());
    CHECK(IClientVirtualDeviceSet2_Release(set) == 0, "set release");
    printf("OK\n");
    return 0;
}
