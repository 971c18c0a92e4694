/* The accepting side of the handshake state machine on any byte stream. */
#include "hs_drive.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_hs_drive(CNODE__HS_ACCEPT, data, size);
    return 0;
}
