/* error.c - kvt_strerror, kvt_errmsg and small shape helpers shared by
 * every module. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "errmsg.h"
#include "kvtier/kvtier.h"

static const char *kvt_error_message(int err)
{
	switch (err) {
	case KVT_OK: return "success";
	case KVT_ENOTFOUND: return "not found";
	case KVT_EEXIST: return "already exists";
	case KVT_ENOSPACE: return "tier budget exhausted and nowhere to spill";
	case KVT_ECORRUPT: return "stored data is corrupt (checksum mismatch)";
	case KVT_EFORMAT: return "malformed input";
	case KVT_EVERSION: return "unsupported format or protocol version";
	case KVT_ESHAPE: return "tensor shape does not match";
	case KVT_ENOGPU: return "no usable GPU (built without CUDA or no device)";
	case KVT_ECUDA: return "CUDA runtime error";
	case KVT_EPROTO: return "protocol error";
	case KVT_ETOOBIG: return "length exceeds a configured bound";
	case KVT_ECLOSED: return "connection closed by peer";
	case KVT_EBUSY: return "cache is in use";
	case KVT_ECODEC: return "unsupported codec or codec parameters";
	default: return NULL;
	}
}

const char *kvt_strerror(int err)
{
	const char *msg = kvt_error_message(err);
	if (msg)
		return msg;
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

int kvt_errmsg(int rc, char *msg, size_t cap, const char *fmt, ...)
{
	if (msg && cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, cap, fmt, ap);
		va_end(ap);
	}
	return rc;
}
