/* hist.c -- the bucket bounds of the engine's histograms (hist.h): a
 * handler's time per message, a worker round's time, a batch's size. */
#include "core/hist.h"

#define US 1000ull
#define MS 1000000ull

const myc__hist_bounds myc__hist_handler_ns = {
    14, {1 * US, 5 * US, 10 * US, 25 * US, 50 * US, 100 * US, 250 * US,
         500 * US, 1 * MS, 5 * MS, 10 * MS, 50 * MS, 250 * MS, 1000 * MS}};

const myc__hist_bounds myc__hist_round_ns = {
    12, {10 * US, 50 * US, 100 * US, 500 * US, 1 * MS, 5 * MS, 10 * MS,
         50 * MS, 100 * MS, 500 * MS, 1000 * MS, 5000 * MS}};

const myc__hist_bounds myc__hist_batch = {
    9, {1, 2, 4, 8, 16, 32, 64, 128, 256}};
