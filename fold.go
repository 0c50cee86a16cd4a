package ledger

import "slices"

// Contribution is one stance that a record contributes to one party at the record's
// valid time (DESIGN.md §1, "How the position view folds records", rule 1).
type Contribution struct {
	Party  string
	Stance Stance
}

// Contributions returns what e contributes, in a fixed order:
//   - a report's findings, to its publisher (e.Party);
//   - a statement's stances, to its party and then to every co-signer;
//   - a veto's votes, to each voter: topic = mandate, YES → SUPPORTS, NO → OPPOSES,
//     ABSTAIN → ABSTAINS, act VOTE;
//   - a correction contributes nothing itself; it changes the record it corrects.
//
// A party listed twice (for instance as speaker and co-signer) contributes once.
func Contributions(e *Event) []Contribution {
	return AppendContributions(nil, e)
}

// AppendContributions appends Contributions(e) to dst and returns the extended
// slice: a caller that folds many records can reuse one slice for all of them.
func AppendContributions(dst []Contribution, e *Event) []Contribution {
	switch b := e.Body.(type) {
	case *ReportPublished:
		return appendAttributed(dst, e, b.Findings)
	case *StatementIssued:
		return appendAttributed(dst, e, b.Stances)
	case *MandateVetoed:
		from := len(dst)
		var seen map[string]bool // for many votes; a scan of few costs less
		if len(b.Votes) > 32 {
			seen = make(map[string]bool, len(b.Votes))
		}
		for _, v := range b.Votes {
			var voted bool
			if seen != nil {
				voted, seen[v.Party] = seen[v.Party], true
			} else {
				voted = votedBefore(dst[from:], v.Party)
			}
			if voted {
				continue
			}
			dst = append(dst, Contribution{Party: v.Party, Stance: Stance{
				Topic: b.Mandate, Alignment: v.Vote.Alignment(), Act: ActVote,
			}})
		}
		return dst
	}
	return dst
}

// votedBefore says whether party has a contribution in votes (a veto's so far).
func votedBefore(votes []Contribution, party string) bool {
	for _, c := range votes {
		if c.Party == party {
			return true
		}
	}
	return false
}

// Attribute returns stances as contributions of the parties e speaks for: e.Party and,
// for a statement, every co-signer. It gives replacement stances of a correction
// (RecordCorrected.ReplacementStances) to the parties of the corrected record e.
func Attribute(e *Event, stances []Stance) []Contribution {
	return appendAttributed(nil, e, stances)
}

// appendAttributed appends Attribute(e, stances) to dst.
func appendAttributed(dst []Contribution, e *Event, stances []Stance) []Contribution {
	dst = slices.Grow(dst, len(stances)) // room for the one party most records have
	eachSpeaker(e, func(p string) {
		for _, s := range stances {
			dst = append(dst, Contribution{Party: p, Stance: s})
		}
	})
	return dst
}

// Speakers returns the parties e speaks for, each once, in order: e.Party and, for a
// statement, its co-signers. Attribute gives stances to them.
func Speakers(e *Event) []string {
	var parties []string
	eachSpeaker(e, func(p string) { parties = append(parties, p) })
	return parties
}

// eachSpeaker calls f with each party e speaks for, in Speakers' order, without
// making the list.
func eachSpeaker(e *Event, f func(party string)) {
	f(e.Party)
	if s, ok := e.Body.(*StatementIssued); ok {
		for i, p := range s.CoSigners {
			if p != e.Party && !contains(s.CoSigners[:i], p) {
				f(p)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
