/*
 * vdisim_vdi.h - C and C++ declarations for the vdisim stand-in VDI library
 * (libsqlvdi.so on Linux, sqlvdi.dll on Windows).
 *
 * Two interfaces to one model:
 *
 *  1. The COM-shaped interface, on every platform: IClientVirtualDeviceSet2
 *     (13 slots) and IClientVirtualDevice (5 slots), exactly as Microsoft's
 *     vdi.h lays them out, in C form (p->lpVtbl->Fn(p, ...), or the
 *     IClientVirtualDeviceSet2_Fn(p, ...) macros) and, in C++ without
 *     CINTERFACE, as classes with pure virtual methods in slot order. Get an
 *     object from vdisim_CreateClientVirtualDeviceSet() (any platform) or
 *     CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet) (Windows, after
 *     regsvr32).
 *
 *  2. On Linux, in C++: the classes ClientVirtualDeviceSet and
 *     ClientVirtualDevice exactly as Microsoft's Linux vdi.h declares them, so
 *     a program written for SQL Server on Linux links with -lsqlvdi and runs
 *     unchanged against this library (LD_LIBRARY_PATH).
 *
 * NAME ENCODING POLICY
 *   - Wide names (LPCWSTR in the COM-shaped interface) are UTF-16 code units,
 *     NUL-terminated, on EVERY platform, as on Windows. On Linux wchar_t is
 *     4 bytes: do not pass L"..." literals unless you build with
 *     -fshort-wchar; use uint16_t / char16_t (u"...") strings instead.
 *     Unpaired surrogates are refused with VD_E_INVALID.
 *   - Narrow names (char* in the Linux class interface) are UTF-8,
 *     NUL-terminated; invalid UTF-8 is refused with VD_E_INVALID.
 *   - Names longer than 4096 code units are refused with VD_E_INVALID.
 *
 * TYPES: fixed width everywhere. HRESULT/int = int32_t, DWORD/ULONG =
 * uint32_t, DWORDLONG = uint64_t; VDConfig is 11 x uint32_t = 44 bytes;
 * VDC_Command is 24 bytes on 64-bit targets with position at offset 8 and
 * buffer at offset 16. Timeouts: COM DWORD milliseconds, 0xFFFFFFFF
 * (INFINITE) waits forever; Linux time_t milliseconds, negative waits forever.
 *
 * IN-PROCESS SERVER: set VDISIM_PLAN=<plan.toml> (and optionally
 * VDISIM_SEED=<n>) before the first set is created; see the README. The
 * statement's outcome is available through vdisim_statement_outcome().
 */
#ifndef VDISIM_VDI_H
#define VDISIM_VDI_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef _WIN32
#include <windows.h>
#define VDISIM_STDCALL __stdcall
#else
#define VDISIM_STDCALL
#ifndef VDISIM_NO_WIN_TYPES
typedef int32_t HRESULT;
typedef uint32_t DWORD;
typedef uint32_t ULONG;
typedef uint64_t DWORDLONG;
typedef uint8_t BYTE;
typedef const uint16_t *LPCWSTR;
#ifndef GUID_DEFINED
#define GUID_DEFINED
typedef struct _GUID {
    uint32_t Data1;
    uint16_t Data2;
    uint16_t Data3;
    uint8_t Data4[8];
} GUID;
#endif
typedef GUID IID;
#endif /* VDISIM_NO_WIN_TYPES */
#endif /* _WIN32 */

#ifndef INFINITE
#define INFINITE 0xFFFFFFFFu
#endif

/* ----- HRESULTs (vdierror.h): negative numbers as int on Linux ---------- */
#define VD_ERROR(code) ((int32_t)(0x80770000u | (uint32_t)(code)))
#ifndef NOERROR
#define NOERROR 0
#endif
#ifndef S_OK
#define S_OK ((HRESULT)0)
#endif
#define VD_E_NOTOPEN       VD_ERROR(2)  /* 0x80770002 */
#define VD_E_TIMEOUT       VD_ERROR(3)  /* 0x80770003 */
#define VD_E_ABORT         VD_ERROR(4)  /* 0x80770004 */
#define VD_E_SECURITY      VD_ERROR(5)  /* 0x80770005 */
#define VD_E_INVALID       VD_ERROR(6)  /* 0x80770006 */
#define VD_E_INSTANCE_NAME VD_ERROR(7)  /* 0x80770007 */
#define VD_E_NOTSUPPORTED  VD_ERROR(9)  /* 0x80770009 */
#define VD_E_MEMORY        VD_ERROR(10) /* 0x8077000A */
#define VD_E_UNEXPECTED    VD_ERROR(11) /* 0x8077000B */
#define VD_E_PROTOCOL      VD_ERROR(12) /* 0x8077000C */
#define VD_E_OPEN          VD_ERROR(13) /* 0x8077000D */
#define VD_E_CLOSE         VD_ERROR(14) /* 0x8077000E */
#define VD_E_BUSY          VD_ERROR(15) /* 0x8077000F */
#ifndef E_POINTER
#define E_POINTER ((int32_t)0x80004003u)
#endif
#ifndef E_NOINTERFACE
#define E_NOINTERFACE ((int32_t)0x80004002u)
#endif
#ifndef E_ACCESSDENIED
#define E_ACCESSDENIED ((int32_t)0x80070005u)
#endif

/* ----- Win32 completion codes (winerror.h values) ------------------------ */
#ifndef ERROR_SUCCESS
#define ERROR_SUCCESS 0
#endif
#ifndef ERROR_INVALID_HANDLE
#define ERROR_INVALID_HANDLE 6
#endif
#ifndef ERROR_ARENA_TRASHED
#define ERROR_ARENA_TRASHED 7
#endif
#ifndef ERROR_HANDLE_EOF
#define ERROR_HANDLE_EOF 38
#endif
#ifndef ERROR_HANDLE_DISK_FULL
#define ERROR_HANDLE_DISK_FULL 39
#endif
#ifndef ERROR_NOT_SUPPORTED
#define ERROR_NOT_SUPPORTED 50
#endif
#ifndef ERROR_DISK_FULL
#define ERROR_DISK_FULL 112
#endif
#ifndef ERROR_OPERATION_ABORTED
#define ERROR_OPERATION_ABORTED 995
#endif
#ifndef ERROR_END_OF_MEDIA
#define ERROR_END_OF_MEDIA 1100
#endif
#ifndef ERROR_FILEMARK_DETECTED
#define ERROR_FILEMARK_DETECTED 1101
#endif
#ifndef ERROR_NO_DATA_DETECTED
#define ERROR_NO_DATA_DETECTED 1104
#endif
#ifndef ERROR_IO_DEVICE
#define ERROR_IO_DEVICE 1117
#endif
#ifndef ERROR_EOM_OVERFLOW
#define ERROR_EOM_OVERFLOW 1129
#endif

/* ----- feature flags (VDConfig.features) --------------------------------- */
enum VDFeatures {
    VDF_Removable = 0x1,
    VDF_Rewind = 0x2,
    VDF_Position = 0x10,
    VDF_SkipBlocks = 0x20,
    VDF_ReversePosition = 0x40,
    VDF_Discard = 0x80,
    VDF_FileMarks = 0x100,
    VDF_RandomAccess = 0x200,
    VDF_SnapshotPrepare = 0x400,
    VDF_EnumFrozenFiles = 0x800,
    VDF_VSSWriter = 0x1000,
    VDF_RequestComplete = 0x2000,
    VDF_WriteMedia = 0x10000,
    VDF_ReadMedia = 0x20000,
    VDF_CompleteEnabled = 0x40000,
    VDF_LikePipe = 0,
    VDF_LikeTape = 0x173,
    VDF_LikeDisk = 0x200
};

/* ----- command codes (VDC_Command.commandCode) --------------------------- */
enum VDCommands {
    VDC_Read = 1,
    VDC_Write = 2,
    VDC_ClearError = 3,
    VDC_Rewind = 4,
    VDC_WriteMark = 5,
    VDC_SkipMarks = 6,
    VDC_SkipBlocks = 7,
    VDC_Load = 8,
    VDC_GetPosition = 9,
    VDC_SetPosition = 10,
    VDC_Discard = 11,
    VDC_Flush = 12,
    VDC_Snapshot = 13,
    VDC_MountSnapshot = 14,
    VDC_PrepareToFreeze = 15,
    VDC_FileInfoBegin = 16,
    VDC_FileInfoEnd = 17,
    VDC_GetError = 18,
    VDC_Complete = 19
};

enum VDWhence { VDC_Beginning = 0, VDC_Current = 1, VDC_End = 2 };

/* ----- structures --------------------------------------------------------- */
struct VDConfig {
    uint32_t deviceCount;           /* client: 1..64 */
    uint32_t features;              /* client: VDF_* (server adds bits) */
    uint32_t prefixZoneSize;        /* client */
    uint32_t alignment;             /* client */
    uint32_t softFileMarkBlockSize; /* client */
    uint32_t EOMWarningSize;        /* client */
    uint32_t serverTimeOut;         /* client: ms, 0 = no watchdog */
    uint32_t blockSize;             /* server */
    uint32_t maxIODepth;            /* server */
    uint32_t maxTransferSize;       /* server */
    uint32_t bufferAreaSize;        /* server */
};

/* Read-only for the client: the library records any write into it. */
struct VDC_Command {
    int32_t commandCode;
    int32_t size;
    int64_t position;
    uint8_t *buffer;
};

#ifndef __cplusplus
typedef struct VDConfig VDConfig;
typedef struct VDC_Command VDC_Command;
#endif

/* ----- COM identities (vdiguid.h) ------------------------------------------ */
static const GUID IID_IClientVirtualDevice =
    {0x40700424, 0x0080, 0x11d2, {0x85, 0x1f, 0x00, 0xc0, 0x4f, 0xc2, 0x17, 0x59}};
static const GUID IID_IClientVirtualDeviceSet =
    {0x40700425, 0x0080, 0x11d2, {0x85, 0x1f, 0x00, 0xc0, 0x4f, 0xc2, 0x17, 0x59}};
static const GUID IID_IClientVirtualDeviceSet2 =
    {0xd0e6eb07, 0x7a62, 0x11d2, {0x85, 0x73, 0x00, 0xc0, 0x4f, 0xc2, 0x17, 0x59}};
/* The class id is the same GUID as IID_IClientVirtualDeviceSet. */
static const GUID CLSID_MSSQL_ClientVirtualDeviceSet =
    {0x40700425, 0x0080, 0x11d2, {0x85, 0x1f, 0x00, 0xc0, 0x4f, 0xc2, 0x17, 0x59}};
static const GUID VDISIM_IID_IUnknown =
    {0x00000000, 0x0000, 0x0000, {0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46}};

/* ----- the COM-shaped interfaces -------------------------------------------- */
#if defined(__cplusplus) && !defined(CINTERFACE)

#if !defined(_WIN32) && !defined(VDISIM_NO_IUNKNOWN)
struct IUnknown {
    virtual HRESULT VDISIM_STDCALL QueryInterface(const GUID &riid, void **ppv) = 0;
    virtual ULONG VDISIM_STDCALL AddRef() = 0;
    virtual ULONG VDISIM_STDCALL Release() = 0;
};
#endif

struct IClientVirtualDevice : public IUnknown {
    virtual HRESULT VDISIM_STDCALL GetCommand(DWORD dwTimeOut, VDC_Command **ppCmd) = 0;
    virtual HRESULT VDISIM_STDCALL CompleteCommand(VDC_Command *pCmd, DWORD dwCompletionCode,
                                                   DWORD dwBytesTransferred,
                                                   DWORDLONG dwlPosition) = 0;
};

struct IClientVirtualDeviceSet : public IUnknown {
    virtual HRESULT VDISIM_STDCALL Create(LPCWSTR lpName, VDConfig *pCfg) = 0;
    virtual HRESULT VDISIM_STDCALL GetConfiguration(DWORD dwTimeOut, VDConfig *pCfg) = 0;
    virtual HRESULT VDISIM_STDCALL OpenDevice(LPCWSTR lpName,
                                              IClientVirtualDevice **ppVirtualDevice) = 0;
    virtual HRESULT VDISIM_STDCALL Close() = 0;
    virtual HRESULT VDISIM_STDCALL SignalAbort() = 0;
    virtual HRESULT VDISIM_STDCALL OpenInSecondary(LPCWSTR lpSetName) = 0;
    virtual HRESULT VDISIM_STDCALL GetBufferHandle(BYTE *pBuffer, DWORD *pBufferHandle) = 0;
    virtual HRESULT VDISIM_STDCALL MapBufferHandle(DWORD dwBuffer, BYTE **ppBuffer) = 0;
};

struct IClientVirtualDeviceSet2 : public IClientVirtualDeviceSet {
    virtual HRESULT VDISIM_STDCALL CreateEx(LPCWSTR lpInstanceName, LPCWSTR lpName,
                                            VDConfig *pCfg) = 0;
    virtual HRESULT VDISIM_STDCALL OpenInSecondaryEx(LPCWSTR lpInstanceName,
                                                     LPCWSTR lpSetName) = 0;
};

#else /* C form */

typedef struct IClientVirtualDevice IClientVirtualDevice;
typedef struct IClientVirtualDeviceSet IClientVirtualDeviceSet;
typedef struct IClientVirtualDeviceSet2 IClientVirtualDeviceSet2;

typedef struct IClientVirtualDeviceVtbl {
    HRESULT(VDISIM_STDCALL *QueryInterface)(IClientVirtualDevice *This, const GUID *riid,
                                            void **ppv);
    ULONG(VDISIM_STDCALL *AddRef)(IClientVirtualDevice *This);
    ULONG(VDISIM_STDCALL *Release)(IClientVirtualDevice *This);
    HRESULT(VDISIM_STDCALL *GetCommand)(IClientVirtualDevice *This, DWORD dwTimeOut,
                                        VDC_Command **ppCmd);
    HRESULT(VDISIM_STDCALL *CompleteCommand)(IClientVirtualDevice *This, VDC_Command *pCmd,
                                             DWORD dwCompletionCode, DWORD dwBytesTransferred,
                                             DWORDLONG dwlPosition);
} IClientVirtualDeviceVtbl;

struct IClientVirtualDevice {
    const IClientVirtualDeviceVtbl *lpVtbl;
};

typedef struct IClientVirtualDeviceSet2Vtbl {
    HRESULT(VDISIM_STDCALL *QueryInterface)(IClientVirtualDeviceSet2 *This, const GUID *riid,
                                            void **ppv);
    ULONG(VDISIM_STDCALL *AddRef)(IClientVirtualDeviceSet2 *This);
    ULONG(VDISIM_STDCALL *Release)(IClientVirtualDeviceSet2 *This);
    HRESULT(VDISIM_STDCALL *Create)(IClientVirtualDeviceSet2 *This, LPCWSTR lpName,
                                    VDConfig *pCfg);
    HRESULT(VDISIM_STDCALL *GetConfiguration)(IClientVirtualDeviceSet2 *This, DWORD dwTimeOut,
                                              VDConfig *pCfg);
    HRESULT(VDISIM_STDCALL *OpenDevice)(IClientVirtualDeviceSet2 *This, LPCWSTR lpName,
                                        IClientVirtualDevice **ppVirtualDevice);
    HRESULT(VDISIM_STDCALL *Close)(IClientVirtualDeviceSet2 *This);
    HRESULT(VDISIM_STDCALL *SignalAbort)(IClientVirtualDeviceSet2 *This);
    HRESULT(VDISIM_STDCALL *OpenInSecondary)(IClientVirtualDeviceSet2 *This, LPCWSTR lpSetName);
    HRESULT(VDISIM_STDCALL *GetBufferHandle)(IClientVirtualDeviceSet2 *This, BYTE *pBuffer,
                                             DWORD *pBufferHandle);
    HRESULT(VDISIM_STDCALL *MapBufferHandle)(IClientVirtualDeviceSet2 *This, DWORD dwBuffer,
                                             BYTE **ppBuffer);
    HRESULT(VDISIM_STDCALL *CreateEx)(IClientVirtualDeviceSet2 *This, LPCWSTR lpInstanceName,
                                      LPCWSTR lpName, VDConfig *pCfg);
    HRESULT(VDISIM_STDCALL *OpenInSecondaryEx)(IClientVirtualDeviceSet2 *This,
                                               LPCWSTR lpInstanceName, LPCWSTR lpSetName);
} IClientVirtualDeviceSet2Vtbl;

struct IClientVirtualDeviceSet2 {
    const IClientVirtualDeviceSet2Vtbl *lpVtbl;
};

/* IClientVirtualDeviceSet: the first 11 slots of the Set2 table. */
struct IClientVirtualDeviceSet {
    const IClientVirtualDeviceSet2Vtbl *lpVtbl;
};

#define IClientVirtualDevice_QueryInterface(p, riid, ppv) ((p)->lpVtbl->QueryInterface(p, riid, ppv))
#define IClientVirtualDevice_AddRef(p) ((p)->lpVtbl->AddRef(p))
#define IClientVirtualDevice_Release(p) ((p)->lpVtbl->Release(p))
#define IClientVirtualDevice_GetCommand(p, t, pp) ((p)->lpVtbl->GetCommand(p, t, pp))
#define IClientVirtualDevice_CompleteCommand(p, c, code, bytes, pos) \
    ((p)->lpVtbl->CompleteCommand(p, c, code, bytes, pos))

#define IClientVirtualDeviceSet2_QueryInterface(p, riid, ppv) ((p)->lpVtbl->QueryInterface(p, riid, ppv))
#define IClientVirtualDeviceSet2_AddRef(p) ((p)->lpVtbl->AddRef(p))
#define IClientVirtualDeviceSet2_Release(p) ((p)->lpVtbl->Release(p))
#define IClientVirtualDeviceSet2_Create(p, name, cfg) ((p)->lpVtbl->Create(p, name, cfg))
#define IClientVirtualDeviceSet2_GetConfiguration(p, t, cfg) ((p)->lpVtbl->GetConfiguration(p, t, cfg))
#define IClientVirtualDeviceSet2_OpenDevice(p, name, pp) ((p)->lpVtbl->OpenDevice(p, name, pp))
#define IClientVirtualDeviceSet2_Close(p) ((p)->lpVtbl->Close(p))
#define IClientVirtualDeviceSet2_SignalAbort(p) ((p)->lpVtbl->SignalAbort(p))
#define IClientVirtualDeviceSet2_OpenInSecondary(p, name) ((p)->lpVtbl->OpenInSecondary(p, name))
#define IClientVirtualDeviceSet2_GetBufferHandle(p, b, h) ((p)->lpVtbl->GetBufferHandle(p, b, h))
#define IClientVirtualDeviceSet2_MapBufferHandle(p, h, pb) ((p)->lpVtbl->MapBufferHandle(p, h, pb))
#define IClientVirtualDeviceSet2_CreateEx(p, inst, name, cfg) ((p)->lpVtbl->CreateEx(p, inst, name, cfg))
#define IClientVirtualDeviceSet2_OpenInSecondaryEx(p, inst, name) \
    ((p)->lpVtbl->OpenInSecondaryEx(p, inst, name))

#endif /* C form */

/* ----- the Linux class interface (Microsoft's Linux vdi.h) ------------------- */
#if defined(__cplusplus) && !defined(_WIN32)
class CVD;
class CVDS;

class ClientVirtualDevice {
public:
    ClientVirtualDevice();
    ~ClientVirtualDevice();
    /* timeOut: ms; negative waits forever; 0 polls. */
    int GetCommand(time_t timeOut, VDC_Command **ppCmd);
    int CompleteCommand(VDC_Command *pCmd, int completionCode, unsigned long bytesTransferred,
                        int64_t position);

private:
    CVD *cvd;
};

class ClientVirtualDeviceSet {
public:
    int Create(char *name, VDConfig *cfg);
    /* timeout: ms; negative waits forever; 0 polls. */
    int GetConfiguration(time_t timeout, VDConfig *cfg);
    int OpenDevice(char *name, ClientVirtualDevice **ppVirtualDevice);
    int Close();
    int SignalAbort();
    int OpenInSecondary(char *setName);
    int GetBufferHandle(uint8_t *pBuffer, unsigned int *pBufferHandle);
    int MapBufferHandle(int dwBuffer, uint8_t **ppBuffer);
    void RegisterDeviceClosed(); /* public, undocumented: a no-op here */
    ClientVirtualDeviceSet();
    ~ClientVirtualDeviceSet();

private:
    CVDS *cvds;
};
#endif

/* ----- vdisim extensions ------------------------------------------------------ */
#ifdef __cplusplus
extern "C" {
#endif

/* Creates a set object and returns the interface riid names (IUnknown,
 * IClientVirtualDeviceSet or IClientVirtualDeviceSet2) with one reference:
 * S_OK, E_NOINTERFACE or E_POINTER. */
HRESULT vdisim_CreateClientVirtualDeviceSet(const GUID *riid, void **ppv);

#define VDISIM_OUTCOME_NONE 0      /* no statement ran (no plan / no set yet) */
#define VDISIM_OUTCOME_RUNNING 1   /* still running when the wait ended */
#define VDISIM_OUTCOME_SUCCEEDED 2
#define VDISIM_OUTCOME_FAILED 3

/* The latest in-process statement's outcome: waits up to timeout_ms
 * (negative: forever; 0: no wait) for it to end, writes it as NUL-terminated
 * JSON into json (truncated to json_len; *json_needed gets the full size
 * including the NUL when non-null) and returns a VDISIM_OUTCOME_* status, or
 * VD_E_INVALID for a null json with a non-zero json_len. */
int32_t vdisim_statement_outcome(int64_t timeout_ms, char *json, size_t json_len,
                                 size_t *json_needed);

/* How many writes into read-only VDC_Command blocks this process made
 * (recorded at CompleteCommand; the call is not refused). */
uint64_t vdisim_block_modifications(void);

/* Harness mode (conformance runs; see sim/standin/src/harness.rs for the
 * JSON shapes). Return codes: 0 OK, 1 timed out, -1 bad JSON, -2 no case,
 * -3 unsupported, -4 buffer too small (*needed says how big), -5 panic.
 * A case's setup may set "time_scale" S (virtual ms per real ms): the
 * in-process server's clock runs S times faster than real time and every
 * set object made during the case waits T/S real ms (rounded up, at least
 * 1) for a timeout of T ms; 0 still polls, INFINITE still waits forever. */
int32_t vdisim_harness_reset(const char *setup_json);
int32_t vdisim_harness_start_statement(const char *statement_json);
int32_t vdisim_harness_event(const char *fault_json);
/* timeout_ms: virtual ms on the case's scaled clock (negative: forever). */
int32_t vdisim_harness_wait_statement(int64_t timeout_ms, char *json, size_t len,
                                      size_t *needed);
int32_t vdisim_harness_finish(char *json, size_t len, size_t *needed);
/* The client process "dies": every live set of the case tells the server
 * (as the OS would on exit), releases its name and stops hearing from it. */
int32_t vdisim_harness_client_death(void);
/* Virtual ms since the case started (negative: no case). */
int64_t vdisim_harness_now_ms(void);
/* The clauses the client half of sets connected to a `vdisim serve` (no
 * harness case) has cited since the last read, as JSON {"clause": count};
 * cleared once read whole. 0, or -4 with *needed set when buf is too small. */
int32_t vdisim_client_tally(char *buf, size_t len, size_t *needed);

/* Names the socket of a `vdisim serve` process: every set object created
 * afterwards connects to it, and the vdisim_harness_* functions drive a case
 * on that server instead of in this process. NULL or "" goes back to
 * in-process hosting. Returns 0. (Without this call and without VDISIM_PLAN,
 * sets connect to the server VDISIM_SERVER names, else the per-user default
 * socket; with none running, one line on stderr says how to start one.) */
int32_t vdisim_use_server(const char *socket_path);

#ifdef __cplusplus
}
#endif

#endif /* VDISIM_VDI_H */
