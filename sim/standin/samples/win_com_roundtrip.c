/*
 * win_com_roundtrip.c - a Windows VDI client that gets the set object the
 * way real Windows clients do, through COM:
 *
 *   CoInitializeEx(NULL, COINIT_MULTITHREADED);
 *   CoCreateInstance(&CLSID_MSSQL_ClientVirtualDeviceSet, NULL,
 *                    CLSCTX_INPROC_SERVER, &IID_IClientVirtualDeviceSet2, &p);
 *
 * (the class must be registered: regsvr32 sqlvdi.dll). With the argument
 * "fallback" it falls back, when CoCreateInstance fails, to loading
 * sqlvdi.dll itself and asking DllGetClassObject for the class factory. It
 * prints which path ran ("activation: ...").
 *
 * Then a BACKUP striped over 2 devices and a RESTORE from them, one Win32
 * thread per device running GetCommand / CompleteCommand until VD_E_CLOSE,
 * against the stand-in's in-process server (VDISIM_PLAN). The server checks
 * the restored bytes; this program checks each stored 512-byte block
 * carries its stream's origin and offset. Last line "OK" and exit 0 on
 * success, "FAIL ..." and exit 1 otherwise.
 *
 * Build: x86_64-w64-mingw32-gcc -std=c11 -Wall -Werror -I sim/standin/include
 *        win_com_roundtrip.c -lole32 -o win_com_roundtrip.exe
 */
#include <windows.h>
#include <objbase.h>

#include "vdisim_vdi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NDEV 2

static const wchar_t *const DEV_NAMES[NDEV] = {L"vdisim-win", L"vdisim-win-dev1"};

typedef struct {
    uint8_t *data;
    size_t len, cap, cursor;
} Media;

typedef struct {
    IClientVirtualDevice *dev;
    Media *media;
    HRESULT end;
} Worker;

static Media media[NDEV];

static void fail(const char *what, HRESULT hr) {
    printf("FAIL %s: 0x%08lx\n", what, (unsigned long)hr);
    fflush(stdout);
    exit(1);
}

static DWORD WINAPI device_thread(LPVOID arg) {
    Worker *w = arg;
    for (;;) {
        VDC_Command *cmd = NULL;
        HRESULT hr = w->dev->lpVtbl->GetCommand(w->dev, INFINITE, &cmd);
        if (hr != NOERROR) {
            w->end = hr;
            return 0;
        }
        DWORD code = ERROR_SUCCESS, bytes = 0;
        Media *m = w->media;
        switch (cmd->commandCode) {
        case VDC_Write:
            if (m->len + (size_t)cmd->size > m->cap) {
                m->cap = (m->len + (size_t)cmd->size) * 2;
                m->data = realloc(m->data, m->cap);
                if (!m->data)
                    fail("out of memory", 0);
            }
            memcpy(m->data + m->len, cmd->buffer, (size_t)cmd->size);
            m->len += (size_t)cmd->size;
            bytes = (DWORD)cmd->size;
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
            return 0;
        }
    }
}

typedef HRESULT(STDAPICALLTYPE *GetClassObjectFn)(REFCLSID, REFIID, LPVOID *);
typedef int32_t (*OutcomeFn)(int64_t, char *, size_t, size_t *);

static IClientVirtualDeviceSet2 *activate(int allow_fallback) {
    void *p = NULL;
    HRESULT hr = CoCreateInstance(&CLSID_MSSQL_ClientVirtualDeviceSet, NULL, CLSCTX_INPROC_SERVER,
                                  &IID_IClientVirtualDeviceSet2, &p);
    if (SUCCEEDED(hr) && p) {
        printf("activation: CoCreateInstance = S_OK\n");
        return p;
    }
    printf("activation: CoCreateInstance = 0x%08lx\n", (unsigned long)hr);
    if (!allow_fallback)
        fail("CoCreateInstance", hr);
    HMODULE dll = LoadLibraryW(L"sqlvdi.dll");
    if (!dll)
        fail("LoadLibrary(sqlvdi.dll)", (HRESULT)GetLastError());
    GetClassObjectFn get = (GetClassObjectFn)(void (*)(void))GetProcAddress(dll, "DllGetClassObject");
    if (!get)
        fail("GetProcAddress(DllGetClassObject)", 0);
    IClassFactory *cf = NULL;
    hr = get(&CLSID_MSSQL_ClientVirtualDeviceSet, &IID_IClassFactory, (void **)&cf);
    if (FAILED(hr) || !cf)
        fail("DllGetClassObject", hr);
    hr = cf->lpVtbl->CreateInstance(cf, NULL, &IID_IClientVirtualDeviceSet2, &p);
    cf->lpVtbl->Release(cf);
    if (FAILED(hr) || !p)
        fail("IClassFactory::CreateInstance", hr);
    printf("activation: DllGetClassObject + IClassFactory::CreateInstance = S_OK\n");
    return p;
}

static void transfer(IClientVirtualDeviceSet2 *set, const char *phase, OutcomeFn outcome) {
    VDConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.deviceCount = NDEV;
    HRESULT hr = set->lpVtbl->CreateEx(set, NULL, DEV_NAMES[0], &cfg);
    if (hr != NOERROR)
        fail("CreateEx", hr);
    hr = set->lpVtbl->GetConfiguration(set, 30000, &cfg);
    if (hr != NOERROR)
        fail("GetConfiguration", hr);
    Worker w[NDEV];
    HANDLE t[NDEV];
    for (int i = 0; i < NDEV; i++) {
        w[i].dev = NULL;
        w[i].media = &media[i];
        w[i].end = NOERROR;
        hr = set->lpVtbl->OpenDevice(set, DEV_NAMES[i], &w[i].dev);
        if (hr != NOERROR)
            fail("OpenDevice", hr);
    }
    for (int i = 0; i < NDEV; i++) {
        t[i] = CreateThread(NULL, 0, device_thread, &w[i], 0, NULL);
        if (!t[i])
            fail("CreateThread", (HRESULT)GetLastError());
    }
    WaitForMultipleObjects(NDEV, t, TRUE, INFINITE);
    for (int i = 0; i < NDEV; i++) {
        CloseHandle(t[i]);
        printf("%s: dev%d end = %s\n", phase, i, w[i].end == VD_E_CLOSE ? "VD_E_CLOSE" : "other");
        if (w[i].end != VD_E_CLOSE)
            fail("device loop end", w[i].end);
    }
    hr = set->lpVtbl->Close(set);
    if (hr != NOERROR)
        fail("Close", hr);
    for (int i = 0; i < NDEV; i++)
        w[i].dev->lpVtbl->Release(w[i].dev);
    static char json[65536];
    int32_t st = outcome(30000, json, sizeof json, NULL);
    printf("%s: statement = %s\n", phase, st == VDISIM_OUTCOME_SUCCEEDED ? "SUCCEEDED" : json);
    if (st != VDISIM_OUTCOME_SUCCEEDED)
        fail("statement", st);
}

int main(int argc, char **argv) {
    int allow_fallback = argc > 1 && strcmp(argv[1], "fallback") == 0;
    HRESULT hr = CoInitializeEx(NULL, COINIT_MULTITHREADED);
    if (FAILED(hr))
        fail("CoInitializeEx", hr);
    IClientVirtualDeviceSet2 *set = activate(allow_fallback);
    HMODULE dll = GetModuleHandleW(L"sqlvdi.dll");
    OutcomeFn outcome =
        dll ? (OutcomeFn)(void (*)(void))GetProcAddress(dll, "vdisim_statement_outcome") : NULL;
    if (!outcome)
        fail("vdisim_statement_outcome not found in the loaded sqlvdi.dll", 0);

    transfer(set, "backup", outcome);
    unsigned long long total = 0;
    for (int i = 0; i < NDEV; i++) {
        uint64_t first = 0;
        /* The family's 64 KiB media header, then tagged blocks. */
        if (media[i].len < 65536 || memcmp(media[i].data, "VDISIMMF", 8) != 0)
            fail("stored family has no media header", (HRESULT)i);
        for (size_t off = 65536; off < media[i].len; off += 512) {
            uint64_t origin, pos;
            memcpy(&origin, media[i].data + off, 8);
            memcpy(&pos, media[i].data + off + 8, 8);
            if (off == 65536)
                first = origin;
            if (origin != first || pos != off)
                fail("stored block not tagged with its stream and offset", (HRESULT)off);
        }
        total += media[i].len;
    }
    printf("backup: stored %llu bytes on %d devices\n", total, NDEV);

    transfer(set, "restore", outcome); /* the same object, created again */
    for (int i = 0; i < NDEV; i++)
        if (media[i].cursor != media[i].len)
            fail("restore did not read everything back", i);
    printf("restore: read back %llu bytes\n", total);

    ULONG refs = set->lpVtbl->Release(set);
    CoUninitialize();
    printf("set released (refs %lu)\nOK\n", (unsigned long)refs);
    return 0;
}
