// tests/abi/header_cxx.cpp — the public header compiles alone as C++11
// (-Wall -Werror) and links from C++, also with the deprecated names hidden
// and the experimental tier shown. Ends with "N passed, N failed".
#define DSV4_NO_DEPRECATED
#define DSV4_ENABLE_EXPERIMENTAL
#include <dsv4/dsv4.h>
#include <cstdio>
#include <cstring>

static_assert(DSV4_AT_LEAST_VERSION(0, 1, 0), "version macro");
static_assert(sizeof(dsv4_status) == 4, "dsv4_status is 32-bit");
static_assert(sizeof(dsv4_gen_event_type) == 4 && sizeof(dsv4_special_token) == 4, "enumerated types are 32-bit");
// DSV4_NO_DEPRECATED hides DSV4_TOKEN_COUNT_: this name must be free to declare
static const int DSV4_TOKEN_COUNT_ = -1;

int main()
{
    int passed = 0, failed = 0;
    auto t = [&](bool c, const char *what) {
        if (c) passed++; else { failed++; std::printf("FAIL %s\n", what); }
    };
    t(dsv4_version_number() == DSV4_VERSION_NUMBER, "version number");
    t(DSV4_TOKEN_COUNT_ == -1, "DSV4_NO_DEPRECATED hides the deprecated name");
    t(std::strcmp(dsv4_version_string(), DSV4_VERSION_STRING) == 0, "version string");
    dsv4_options *o = nullptr;
    t(dsv4_options_create(&o) == DSV4_OK && o != nullptr, "options from C++");
    dsv4_options_free(o);
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
