/* Placeholder: binds nothing yet. Replaced by the forward pass. */
#include "loader/loader.h"

dsv4_status dsv4__weights_bind(struct dsv4_model *m, dsv4__err *e)
{
    (void)m; (void)e;
    return DSV4_OK;
}

void dsv4__weights_free(struct dsv4__weights *w) { (void)w; }
