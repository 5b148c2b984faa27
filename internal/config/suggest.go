package config

import (
	"slices"
	"strings"
)

// Suggest returns the candidate nearest to key by edit distance, or "" when none is near enough to
// be a likely typo. Ties go to the alphabetically first candidate, so the answer is stable.
func Suggest(key string, candidates []string) string {
	best, bestDist := "", -1
	sorted := slices.Clone(candidates)
	slices.Sort(sorted)
	for _, c := range sorted {
		d := editDistance(strings.ToLower(key), strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	n := len([]rune(key))
	if bestDist < 0 || !(bestDist <= 2 && bestDist < n || bestDist <= n/3) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b: the number of rune
// insertions, deletions, substitutions and swaps of two adjacent runes that turn a into b, so that
// "prot" is one step from "port".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// Three rows of the dynamic-programming table: i-2, i-1 and i.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
