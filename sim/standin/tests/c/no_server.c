#define _POSIX_C_SOURCE 199309L
/* Without VDISIM_PLAN: sets are created, configuration never arrives
 * (GetConfiguration times out), and wrong-state calls return their codes. */
#include "vdisim_vdi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, "\n");                                          \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

static void to_u16(uint16_t *out, const char *s) {
    while ((*out++ = (uint16_t)(unsigned char)*s++)) {
    }
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(void) {
    char buf[64];
    uint16_t name[64], bad[64], inst[64];
    snprintf(buf, sizeof buf, "noserver-%d", (int)getpid());
    to_u16(name, buf);
    void *p = NULL;
    CHECK(vdisim_CreateClientVirtualDeviceSet(&IID_IClientVirtualDeviceSet2, NULL) == E_POINTER,
          "factory(NULL ppv)");
    CHECK(vdisim_CreateClientVirtualDeviceSet(&VDISIM_IID_IUnknown, &p) == S_OK, "factory");
    IClientVirtualDeviceSet2 *set = p;
    VDConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.deviceCount = 1;
    VDConfig got;
    HRESULT hr = IClientVirtualDeviceSet2_GetConfiguration(set, 0, &got);
    CHECK(hr == VD_E_PROTOCOL, "GetConfiguration before Create = 0x%08x", (unsigned)hr);
    to_u16(inst, "NOSUCHINSTANCE");
    hr = IClientVirtualDeviceSet2_CreateEx(set, inst, name, &cfg);
    CHECK(hr == VD_E_INSTANCE_NAME, "CreateEx(bad instance) = 0x%08x", (unsigned)hr);
    to_u16(bad, "a\\b");
    hr = IClientVirtualDeviceSet2_Create(set, bad, &cfg);
    CHECK(hr == VD_E_INVALID, "Create(backslash) = 0x%08x", (unsigned)hr);
    uint16_t lone[2] = {0xD800, 0};
    hr = IClientVirtualDeviceSet2_Create(set, lone, &cfg);
    CHECK(hr == VD_E_INVALID, "Create(unpaired surrogate) = 0x%08x", (unsigned)hr);
    cfg.deviceCount = 65;
    hr = IClientVirtualDeviceSet2_Create(set, name, &cfg);
    CHECK(hr == VD_E_NOTSUPPORTED, "Create(65 devices) = 0x%08x", (unsigned)hr);
    cfg.deviceCount = 1;
    hr = IClientVirtualDeviceSet2_Create(set, name, &cfg);
    CHECK(hr == NOERROR, "Create = 0x%08x", (unsigned)hr);

    /* A second object cannot take the same name while it is live. */
    void *p2 = NULL;
    CHECK(vdisim_CreateClientVirtualDeviceSet(&IID_IClientVirtualDeviceSet, &p2) == S_OK, "f2");
    IClientVirtualDeviceSet2 *set2 = p2;
    hr = IClientVirtualDeviceSet2_Create(set2, name, &cfg);
    CHECK(hr == VD_E_BUSY, "Create(name in use) = 0x%08x", (unsigned)hr);

    hr = IClientVirtualDeviceSet2_GetConfiguration(set, 0, &got);
    CHECK(hr == VD_E_TIMEOUT, "GetConfiguration(0) = 0x%08x", (unsigned)hr);
    double t0 = now_ms();
    hr = IClientVirtualDeviceSet2_GetConfiguration(set, 50, &got);
    CHECK(hr == VD_E_TIMEOUT && now_ms() - t0 >= 49.0, "GetConfiguration(50) = 0x%08x",
          (unsigned)hr);
    IClientVirtualDevice *dev = (IClientVirtualDevice *)1;
    hr = IClientVirtualDeviceSet2_OpenDevice(set, name, &dev);
    CHECK(hr == VD_E_PROTOCOL && dev == NULL, "OpenDevice before config = 0x%08x", (unsigned)hr);
    uint8_t *b = NULL;
    hr = IClientVirtualDeviceSet2_MapBufferHandle(set, 1, &b);
    CHECK(hr == VD_E_INVALID, "MapBufferHandle(1) = 0x%08x", (unsigned)hr);
    DWORD h = 0;
    hr = IClientVirtualDeviceSet2_GetBufferHandle(set, (BYTE *)&h, &h);
    CHECK(hr == VD_E_INVALID, "GetBufferHandle(foreign) = 0x%08x", (unsigned)hr);
    hr = IClientVirtualDeviceSet2_SignalAbort(set);
    CHECK(hr == NOERROR, "SignalAbort = 0x%08x", (unsigned)hr);
    hr = IClientVirtualDeviceSet2_GetConfiguration(set, INFINITE, &got);
    CHECK(hr == VD_E_ABORT, "GetConfiguration after abort = 0x%08x", (unsigned)hr);
    hr = IClientVirtualDeviceSet2_Close(set);
    CHECK(hr == NOERROR, "Close = 0x%08x", (unsigned)hr);
    hr = IClientVirtualDeviceSet2_Close(set);
    CHECK(hr == VD_E_PROTOCOL, "double Close = 0x%08x", (unsigned)hr);
    /* The name is free again. */
    hr = IClientVirtualDeviceSet2_Create(set2, name, &cfg);
    CHECK(hr == NOERROR, "Create after Close = 0x%08x", (unsigned)hr);
    /* Release with a live set closes it. */
    CHECK(IClientVirtualDeviceSet2_Release(set2) == 0, "release set2");
    CHECK(IClientVirtualDeviceSet2_Release(set) == 0, "release set");
    char json[64];
    size_t need = 0;
    CHECK(vdisim_statement_outcome(0, json, sizeof json, &need) == VDISIM_OUTCOME_NONE, "outcome");
    CHECK(strcmp(json, "null") == 0 && need == 5, "outcome json %s", json);
    CHECK(vdisim_statement_outcome(0, NULL, 4, NULL) == VD_E_INVALID, "outcome(NULL, 4)");
    printf("OK\n");
    return 0;
}
