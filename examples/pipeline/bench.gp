# bench.gp -- the load test's plot (./bench): accepted events/s and
# arrival -> signal latency (p50, p99, p999) per offered rate, one line per
# mode. gnuplot -e "dat='...'; png='...'" bench.gp
set terminal pngcairo size 1200,500 font ",10"
set output png
set multiplot layout 1,2 title "Bandit pipeline: one process vs three over Unix / TCP (medians)"
set xtics ("1k" 1, "10k" 2, "50k" 3, "100k" 4, "flood" 5)
set xrange [0.5:5.5]
set xlabel "offered accepted events/s"
set grid
set key top left
set ylabel "accepted events/s"
set logscale y
plot for [i=0:2] dat index i using 1:3 with linespoints lw 2 lc i+1 \
     title (i == 0 ? "one process" : i == 1 ? "3 processes, Unix" : "3 processes, TCP")
set ylabel "arrival -> signal (us)"
set key top left
plot for [i=0:2] dat index i using 1:5 with linespoints lw 2 dt 1 lc i+1 \
       title (i == 0 ? "p99 one" : i == 1 ? "p99 Unix" : "p99 TCP"), \
     for [i=0:2] dat index i using 1:4 with linespoints lw 1 dt 2 lc i+1 \
       title (i == 0 ? "p50 one" : i == 1 ? "p50 Unix" : "p50 TCP"), \
     for [i=0:2] dat index i using 1:6 with points pt 6 lc i+1 \
       title (i == 0 ? "p999 one" : i == 1 ? "p999 Unix" : "p999 TCP")
unset multiplot
