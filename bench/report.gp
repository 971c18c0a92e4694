# bench/report.png: each figure's ratio C / anchor (median, with min-max bars) on a log scale,
# 1cpu and 2cpu side by side, the goal of each figure that has one as a red mark (a goal on
# the C value is drawn as the ratio it means against that figure's anchor), 1.0 (as fast as
# BEAM) as a grey line. Called by bench/plot.sh with DIR (the .dat files) and OUT set.
set terminal pngcairo size 1800,2600 font "sans,9"
set output OUT
set termoption noenhanced
stats DIR."/plot_1cpu.dat" using 1 nooutput
n1 = STATS_max
stats DIR."/plot_2cpu.dat" using 1 nooutput
n = (STATS_max > n1 ? STATS_max : n1)
set multiplot layout 1,2 title "libcnode: C / anchor per figure (median, min-max), goal in red; left of 1.0 is better for times, right for rates" font "sans,12"
set logscale x
set xrange [0.005:50]
set yrange [n + 1:-1]
set grid xtics
set xlabel "ratio C / anchor (log)"
set key bottom right
set arrow 1 from 1, graph 0 to 1, graph 1 nohead lc rgb "#888888" lw 2
set ytics nomirror
set lmargin 30
do for [p in "1cpu 2cpu"] {
    f = DIR."/plot_".p.".dat"
    set title p
    plot f using 4:1:3:5:ytic(2) with xerrorbars pt 7 ps 0.8 lc rgb "#1f5fa8" title "ratio (median, min-max)", \
         f using 6:1 with points pt 5 ps 0.9 lc rgb "#d62728" title "goal"
}
unset multiplot
