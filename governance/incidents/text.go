package incidents

import "github.com/citytwin/citytwin/twin"

// validText refuses strings the store cannot hold (NUL, invalid UTF-8,
// over twin.MaxTextBytes) in a report body before anything is done with
// it; twin.Put and twin.Update would refuse them too, later and less
// clearly.
func (r Report) validText() error {
	for _, f := range [...]struct{ name, v string }{{"type", r.Type}, {"description", r.Description}} {
		if err := twin.ValidText(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// validText checks an action body's strings as Report.validText does.
func (a Action) validText() error {
	if err := twin.ValidText("worker", a.Worker); err != nil {
		return err
	}
	return twin.ValidText("note", a.Note)
}
