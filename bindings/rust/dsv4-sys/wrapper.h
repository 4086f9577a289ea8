/* bindings/rust/dsv4-sys/wrapper.h — what bindgen reads: the public header, stable tier only. */
#include <dsv4/dsv4.h>
