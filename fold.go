package ledger

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
	switch b := e.Body.(type) {
	case *ReportPublished:
		return Attribute(e, b.Findings)
	case *StatementIssued:
		return Attribute(e, b.Stances)
	case *MandateVetoed:
		out := make([]Contribution, 0, len(b.Votes))
		seen := make(map[string]bool, len(b.Votes))
		for _, v := range b.Votes {
			if seen[v.Party] {
				continue
			}
			seen[v.Party] = true
			out = append(out, Contribution{Party: v.Party, Stance: Stance{
				Topic: b.Mandate, Alignment: v.Vote.Alignment(), Act: ActVote,
			}})
		}
		return out
	}
	return nil
}

// Attribute returns stances as contributions of the parties e speaks for: e.Party and,
// for a statement, every co-signer. It gives replacement stances of a correction
// (RecordCorrected.ReplacementStances) to the parties of the corrected record e.
func Attribute(e *Event, stances []Stance) []Contribution {
	parties := Speakers(e)
	out := make([]Contribution, 0, len(parties)*len(stances))
	for _, p := range parties {
		for _, s := range stances {
			out = append(out, Contribution{Party: p, Stance: s})
		}
	}
	return out
}

// Speakers returns the parties e speaks for, each once, in order: e.Party and, for a
// statement, its co-signers. Attribute gives stances to them.
func Speakers(e *Event) []string {
	parties := []string{e.Party}
	if s, ok := e.Body.(*StatementIssued); ok {
		for _, p := range s.CoSigners {
			if !contains(parties, p) {
				parties = append(parties, p)
			}
		}
	}
	return parties
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
